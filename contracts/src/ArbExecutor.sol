// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {IERC20Like, IV2Pair, V2Lib} from "./Interfaces.sol";

/// Atomic N-hop arbitrage over V2-style pairs. Each hop's output goes straight to the next pair
/// (one token transfer per hop, no approvals, no storage writes), and the whole cycle reverts
/// unless it gains at least `minProfit`: an `eth_call` of `execute` is the exact simulation.
contract ArbExecutor {
    address public immutable owner;

    event Arb(uint256 amountIn, uint256 profit);

    error NotOwner();
    error BadPath();
    error NotACycle(address tokenIn, address tokenOut);
    error InsufficientProfit(uint256 amountOut, uint256 required);

    constructor() {
        owner = msg.sender;
    }

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner();
        _;
    }

    /// Swap `amountIn` of the first hop's input token (held by this contract) around the cycle.
    /// `feeBps[i]` is hop i's fee over 10_000 (30 for canonical Uniswap V2): pools do not expose it.
    function execute(
        address[] calldata pairs,
        bool[] calldata zeroForOne,
        uint16[] calldata feeBps,
        uint256 amountIn,
        uint256 minProfit
    ) external onlyOwner returns (uint256 profit) {
        uint256 n = pairs.length;
        if (n == 0 || zeroForOne.length != n || feeBps.length != n) revert BadPath();
        address token = zeroForOne[0] ? IV2Pair(pairs[0]).token0() : IV2Pair(pairs[0]).token1();
        address last = zeroForOne[n - 1] ? IV2Pair(pairs[n - 1]).token1() : IV2Pair(pairs[n - 1]).token0();
        if (last != token) revert NotACycle(token, last);

        uint256 balanceBefore = IERC20Like(token).balanceOf(address(this));
        V2Lib.safeTransfer(token, pairs[0], amountIn);
        _swapAlong(pairs, zeroForOne, feeBps, amountIn);

        // Measured on the balance, not on the last hop's computed output, so a token that taxes transfers cannot fake a profit.
        uint256 received = IERC20Like(token).balanceOf(address(this)) + amountIn - balanceBefore;
        if (received < amountIn + minProfit) revert InsufficientProfit(received, amountIn + minProfit);
        profit = received - amountIn;
        emit Arb(amountIn, profit);
    }

    /// Its own frame, apart from execute's locals, keeps the stack shallow without via-IR.
    function _swapAlong(
        address[] calldata pairs,
        bool[] calldata zeroForOne,
        uint16[] calldata feeBps,
        uint256 amount
    ) private {
        uint256 n = pairs.length;
        for (uint256 i; i < n; ++i) {
            amount = _hop(pairs[i], zeroForOne[i], feeBps[i], amount, i + 1 < n ? pairs[i + 1] : address(this));
        }
    }

    /// Exact V2 output for `amountIn` already sitting in `pair`, sent to `to`.
    function _hop(address pair, bool zeroForOne, uint256 feeBps, uint256 amountIn, address to)
        private
        returns (uint256 amountOut)
    {
        (uint256 reserve0, uint256 reserve1,) = IV2Pair(pair).getReserves();
        if (zeroForOne) {
            amountOut = V2Lib.amountOut(amountIn, reserve0, reserve1, feeBps);
            IV2Pair(pair).swap(0, amountOut, to, "");
        } else {
            amountOut = V2Lib.amountOut(amountIn, reserve1, reserve0, feeBps);
            IV2Pair(pair).swap(amountOut, 0, to, "");
        }
    }

    function withdraw(address token, uint256 amount, address to) external onlyOwner {
        V2Lib.safeTransfer(token, to, amount);
    }
}
