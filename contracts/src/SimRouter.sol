// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {IV2Pair, V2Lib} from "./Interfaces.sol";

/// One-pair swap for the simulated market's traders: input transfer, exact output and the pair's
/// swap in one call, so no other transaction can land between the transfer and the swap.
contract SimRouter {
    error InsufficientOutput(uint256 amountOut, uint256 minOut);

    /// Caller approves this router for the input token; `feeBps` is the pair's fee over 10_000.
    function swap(address pair, bool zeroForOne, uint16 feeBps, uint256 amountIn, uint256 minOut, address to)
        external
        returns (uint256 out)
    {
        (uint256 reserve0, uint256 reserve1,) = IV2Pair(pair).getReserves();
        if (zeroForOne) {
            out = V2Lib.amountOut(amountIn, reserve0, reserve1, feeBps);
            if (out < minOut) revert InsufficientOutput(out, minOut);
            V2Lib.safeTransferFrom(IV2Pair(pair).token0(), msg.sender, pair, amountIn);
            IV2Pair(pair).swap(0, out, to, "");
        } else {
            out = V2Lib.amountOut(amountIn, reserve1, reserve0, feeBps);
            if (out < minOut) revert InsufficientOutput(out, minOut);
            V2Lib.safeTransferFrom(IV2Pair(pair).token1(), msg.sender, pair, amountIn);
            IV2Pair(pair).swap(out, 0, to, "");
        }
    }
}
