// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// The slice of ERC-20 the pools, the executor and the router call.
interface IERC20Like {
    function balanceOf(address owner) external view returns (uint256);
    function transfer(address to, uint256 value) external returns (bool);
    function transferFrom(address from, address to, uint256 value) external returns (bool);
}

/// The slice of a Uniswap-V2 pair that swapping needs; the canonical pair and FeePair both have it.
interface IV2Pair {
    function token0() external view returns (address);
    function token1() external view returns (address);
    function getReserves() external view returns (uint112 reserve0, uint112 reserve1, uint32 blockTimestampLast);
    function swap(uint256 amount0Out, uint256 amount1Out, address to, bytes calldata data) external;
}

/// Flash-swap callback, same selector as Uniswap V2's.
interface IUniswapV2Callee {
    function uniswapV2Call(address sender, uint256 amount0, uint256 amount1, bytes calldata data) external;
}

/// What a FeePair asks its factory: the fee once at construction, the protocol fee recipient per liquidity event.
interface IFeeFactory {
    function feeBps() external view returns (uint16);
    function feeTo() external view returns (address);
}

/// Exact V2 integer math and token transfers shared by the executor and the router.
library V2Lib {
    uint256 internal constant FEE_DENOMINATOR = 10_000;

    error TransferFailed(address token);

    /// Same floor as the pair's K check, so the result is the largest output the pair accepts.
    function amountOut(uint256 amountIn, uint256 reserveIn, uint256 reserveOut, uint256 feeBps)
        internal
        pure
        returns (uint256)
    {
        uint256 inWithFee = amountIn * (FEE_DENOMINATOR - feeBps);
        return (inWithFee * reserveOut) / (reserveIn * FEE_DENOMINATOR + inWithFee);
    }

    /// Accepts tokens that return nothing (USDT-style) as well as those that return true.
    function safeTransfer(address token, address to, uint256 value) internal {
        (bool ok, bytes memory data) = token.call(abi.encodeCall(IERC20Like.transfer, (to, value)));
        if (!ok || (data.length != 0 && !abi.decode(data, (bool)))) revert TransferFailed(token);
    }

    function safeTransferFrom(address token, address from, address to, uint256 value) internal {
        (bool ok, bytes memory data) = token.call(abi.encodeCall(IERC20Like.transferFrom, (from, to, value)));
        if (!ok || (data.length != 0 && !abi.decode(data, (bool)))) revert TransferFailed(token);
    }
}
