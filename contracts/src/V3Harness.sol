// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {V2Lib} from "./Interfaces.sol";

/// The slice of a canonical Uniswap V3 pool the harness drives.
interface IV3PoolActions {
    function token0() external view returns (address);
    function token1() external view returns (address);
    function mint(address recipient, int24 tickLower, int24 tickUpper, uint128 amount, bytes calldata data)
        external
        returns (uint256 amount0, uint256 amount1);
    function burn(int24 tickLower, int24 tickUpper, uint128 amount) external returns (uint256 amount0, uint256 amount1);
    function collect(
        address recipient,
        int24 tickLower,
        int24 tickUpper,
        uint128 amount0Requested,
        uint128 amount1Requested
    ) external returns (uint128 amount0, uint128 amount1);
    function swap(
        address recipient,
        bool zeroForOne,
        int256 amountSpecified,
        uint160 sqrtPriceLimitX96,
        bytes calldata data
    ) external returns (int256 amount0, int256 amount1);
}

/// Test helper for canonical V3 pools: adds and removes liquidity and swaps, paying each pool from
/// the tokens it holds (the TestToken owner mints them to it), so tests compare the pool's own
/// amounts with the Python math. Positions and swap outputs stay with the harness.
///
/// A pool calls back the contract that called it; the harness pays only the pool it is calling at
/// that moment (kept in a transient slot for the duration of the call), so no one else can make it
/// pay by calling a callback directly.
contract V3Harness {
    // TickMath.MIN_SQRT_RATIO + 1 and MAX_SQRT_RATIO - 1: the widest limits a pool accepts.
    uint160 internal constant MIN_LIMIT = 4295128740;
    uint160 internal constant MAX_LIMIT = 1461446703485210103287273052203988822378723970341;

    address public immutable owner;
    /// The pool being called right now; zero outside mint and swap.
    address private transient activePool;

    error NotOwner();
    error UnexpectedCallback(address caller, address expected);

    constructor() {
        owner = msg.sender;
    }

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner();
        _;
    }

    /// Adds `amount` of liquidity to [tickLower, tickUpper), owned by the harness; returns what it paid.
    function mint(address pool, int24 tickLower, int24 tickUpper, uint128 amount)
        external
        onlyOwner
        returns (uint256 amount0, uint256 amount1)
    {
        activePool = pool;
        (amount0, amount1) = IV3PoolActions(pool).mint(address(this), tickLower, tickUpper, amount, "");
        activePool = address(0);
    }

    /// Removes `amount` of the harness's liquidity and collects everything the position is owed
    /// (the withdrawn tokens plus its fees) back to the harness; returns the withdrawn amounts.
    function burn(address pool, int24 tickLower, int24 tickUpper, uint128 amount)
        external
        onlyOwner
        returns (uint256 amount0, uint256 amount1)
    {
        (amount0, amount1) = IV3PoolActions(pool).burn(tickLower, tickUpper, amount);
        IV3PoolActions(pool).collect(address(this), tickLower, tickUpper, type(uint128).max, type(uint128).max);
    }

    /// One swap on `pool`, output to the harness: amountSpecified > 0 is exact input, < 0 exact
    /// output; sqrtPriceLimitX96 = 0 means no limit. Returns the pool's (amount0, amount1), signed
    /// as in its Swap event. As an eth_call it quotes; as a transaction it swaps.
    function swap(address pool, bool zeroForOne, int256 amountSpecified, uint160 sqrtPriceLimitX96)
        external
        onlyOwner
        returns (int256 amount0, int256 amount1)
    {
        if (sqrtPriceLimitX96 == 0) sqrtPriceLimitX96 = zeroForOne ? MIN_LIMIT : MAX_LIMIT;
        activePool = pool;
        (amount0, amount1) = IV3PoolActions(pool).swap(address(this), zeroForOne, amountSpecified, sqrtPriceLimitX96, "");
        activePool = address(0);
    }

    function uniswapV3MintCallback(uint256 amount0Owed, uint256 amount1Owed, bytes calldata) external {
        _pay(amount0Owed, amount1Owed);
    }

    function uniswapV3SwapCallback(int256 amount0Delta, int256 amount1Delta, bytes calldata) external {
        _pay(amount0Delta > 0 ? uint256(amount0Delta) : 0, amount1Delta > 0 ? uint256(amount1Delta) : 0);
    }

    /// Pays the calling pool only if it is the pool the harness is calling now.
    function _pay(uint256 amount0, uint256 amount1) private {
        address pool = activePool;
        if (pool == address(0) || msg.sender != pool) revert UnexpectedCallback(msg.sender, pool);
        if (amount0 > 0) V2Lib.safeTransfer(IV3PoolActions(pool).token0(), pool, amount0);
        if (amount1 > 0) V2Lib.safeTransfer(IV3PoolActions(pool).token1(), pool, amount1);
    }
}
