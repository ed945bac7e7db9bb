// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {IERC20Like, IV2Pair, V2Lib} from "./Interfaces.sol";

/// The slice of a Uniswap-V3 pool the executor calls.
interface IV3SwapPool {
    function token0() external view returns (address);
    function token1() external view returns (address);
    function swap(
        address recipient,
        bool zeroForOne,
        int256 amountSpecified,
        uint160 sqrtPriceLimitX96,
        bytes calldata data
    ) external returns (int256 amount0, int256 amount1);
}

/// Atomic N-hop arbitrage over Uniswap-V2-style pairs and Uniswap-V3 pools, mixed in any order.
///
/// A V2 hop's input is already in its pair when it swaps (sent by this contract for the first hop,
/// else by the hop before as its output), so it costs one token transfer and no approval. A V3
/// pool takes its input in `uniswapV3SwapCallback`, which pays only a pool whose address is the
/// CREATE2 address of (factory, token0, token1, fee) under the canonical V3 POOL_INIT_CODE_HASH:
/// only code deployed from that init code sits there, and that code calls the callback of whoever
/// called its `swap`, during that swap; so no other caller, and no pool that a factory did not
/// create, is ever paid (nor called: `execute` checks each V3 hop's pool the same way before it
/// swaps). The factory is per hop (one executor serves every V3 deployment sharing
/// the init code), named by the owner in `execute` and carried to the callback in the swap's data.
///
/// No storage writes; the whole cycle reverts unless it gains at least `minProfit`, measured on the
/// balance: an `eth_call` of `execute` is the exact simulation and returns the profit.
contract ArbExecutor {
    /// keccak256 of the canonical UniswapV3Pool creation code (v3-core 1.0.1, mainnet's).
    bytes32 internal constant POOL_INIT_CODE_HASH = 0xe34f199b19b2b4f47f68442619d555527d244f78a3297ea89325f843f87b8b54;
    // TickMath.MIN_SQRT_RATIO + 1 and MAX_SQRT_RATIO - 1: no price limit, as routers pass it.
    uint160 internal constant MIN_LIMIT = 4295128740;
    uint160 internal constant MAX_LIMIT = 1461446703485210103287273052203988822378723970341;

    address public immutable owner;

    event Arb(uint256 amountIn, uint256 profit);

    error NotOwner();
    error BadPath();
    error NotACycle(address tokenIn, address tokenOut);
    error InsufficientProfit(uint256 amountOut, uint256 required);
    /// A V3 pool took less than the hop's whole input (its price reached the limit).
    error PartialFill(address pool, uint256 amountIn, uint256 taken);
    /// A V3 hop's `pool` is not the pool its factory would have created for its tokens and fee.
    error NotAPool(address pool, address expected);
    /// `caller` is not the V3 pool that the callback data's (factory, token0, token1, fee) name.
    error UnauthorizedCallback(address caller, address pool);

    constructor() {
        owner = msg.sender;
    }

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner();
        _;
    }

    /// V2 pairs only: swap `amountIn` of the first hop's input token (held by this contract) around
    /// the cycle. `feeBps[i]` is hop i's fee over 10_000 (30 for canonical Uniswap V2): pairs do not
    /// expose it.
    function execute(
        address[] calldata pairs,
        bool[] calldata zeroForOne,
        uint16[] calldata feeBps,
        uint256 amountIn,
        uint256 minProfit
    ) external onlyOwner returns (uint256 profit) {
        uint256 n = pairs.length;
        if (n == 0 || zeroForOne.length != n || feeBps.length != n) revert BadPath();
        address token = _cycleToken(pairs[0], zeroForOne[0], pairs[n - 1], zeroForOne[n - 1]);
        uint256 balanceBefore = IERC20Like(token).balanceOf(address(this));
        V2Lib.safeTransfer(token, pairs[0], amountIn);
        _swapAlong(pairs, zeroForOne, feeBps, amountIn);
        profit = _settle(token, balanceBefore, amountIn, minProfit);
    }

    /// Any mix of V2 and V3 hops. `factories[i]` is address(0) for a V2 hop, whose `fees[i]` is its
    /// fee in basis points; for a V3 hop it is the factory that created `pools[i]`, and `fees[i]`
    /// is the pool's fee tier in hundredths of a bip (500, 3000, 10000). A V3 hop swaps its whole
    /// input with no price limit, or reverts (`PartialFill`).
    function execute(
        address[] calldata pools,
        bool[] calldata zeroForOne,
        uint24[] calldata fees,
        address[] calldata factories,
        uint256 amountIn,
        uint256 minProfit
    ) external onlyOwner returns (uint256 profit) {
        uint256 n = pools.length;
        if (n == 0 || zeroForOne.length != n || fees.length != n || factories.length != n) revert BadPath();
        address token = _cycleToken(pools[0], zeroForOne[0], pools[n - 1], zeroForOne[n - 1]);
        uint256 balanceBefore = IERC20Like(token).balanceOf(address(this));
        if (factories[0] == address(0)) V2Lib.safeTransfer(token, pools[0], amountIn);
        _route(pools, zeroForOne, fees, factories, amountIn);
        profit = _settle(token, balanceBefore, amountIn, minProfit);
    }

    /// Pays a V3 pool what its swap owes, once the pool is authenticated; see the contract's notes.
    function uniswapV3SwapCallback(int256 amount0Delta, int256 amount1Delta, bytes calldata data) external {
        (address factory, address token0, address token1, uint24 fee) =
            abi.decode(data, (address, address, address, uint24));
        address pool = _v3PoolAddress(factory, token0, token1, fee);
        if (msg.sender != pool) revert UnauthorizedCallback(msg.sender, pool);
        if (amount0Delta > 0) V2Lib.safeTransfer(token0, pool, uint256(amount0Delta));
        else if (amount1Delta > 0) V2Lib.safeTransfer(token1, pool, uint256(amount1Delta));
    }

    function withdraw(address token, uint256 amount, address to) external onlyOwner {
        V2Lib.safeTransfer(token, to, amount);
    }

    /// The token the first hop sells, which the last hop must buy back.
    function _cycleToken(address first, bool firstZeroForOne, address last, bool lastZeroForOne)
        private
        view
        returns (address token)
    {
        token = firstZeroForOne ? IV2Pair(first).token0() : IV2Pair(first).token1();
        address back = lastZeroForOne ? IV2Pair(last).token1() : IV2Pair(last).token0();
        if (back != token) revert NotACycle(token, back);
    }

    /// Measured on the balance, not on the last hop's computed output, so a token that taxes
    /// transfers cannot fake a profit.
    function _settle(address token, uint256 balanceBefore, uint256 amountIn, uint256 minProfit)
        private
        returns (uint256 profit)
    {
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

    /// Each hop's output goes to the next hop's pair when that is a V2 pair, else to this contract
    /// (a V3 pool counts only what its callback pays it).
    function _route(
        address[] calldata pools,
        bool[] calldata zeroForOne,
        uint24[] calldata fees,
        address[] calldata factories,
        uint256 amount
    ) private {
        uint256 n = pools.length;
        for (uint256 i; i < n; ++i) {
            address to = i + 1 < n && factories[i + 1] == address(0) ? pools[i + 1] : address(this);
            amount = factories[i] == address(0)
                ? _hop(pools[i], zeroForOne[i], fees[i], amount, to)
                : _v3Hop(pools[i], zeroForOne[i], fees[i], factories[i], amount, to);
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

    /// Exact-input V3 swap of `amountIn` (paid from this contract's balance in the callback), output to `to`.
    function _v3Hop(address pool, bool zeroForOne, uint24 fee, address factory, uint256 amountIn, address to)
        private
        returns (uint256 amountOut)
    {
        bytes memory data = _v3CallbackData(pool, factory, fee);
        // amountIn >= 2**255 wraps to an exact-output swap: PartialFill catches it too.
        (int256 amount0, int256 amount1) =
            IV3SwapPool(pool).swap(to, zeroForOne, int256(amountIn), zeroForOne ? MIN_LIMIT : MAX_LIMIT, data);
        (int256 taken, int256 given) = zeroForOne ? (amount0, amount1) : (amount1, amount0);
        if (uint256(taken) != amountIn) revert PartialFill(pool, amountIn, uint256(taken));
        amountOut = uint256(-given);
    }

    /// What the swap hands the callback: (factory, token0, token1, fee). The pool is checked here
    /// too, before it is called, so a contract that no factory created cannot even report amounts.
    function _v3CallbackData(address pool, address factory, uint24 fee) private view returns (bytes memory) {
        address token0 = IV3SwapPool(pool).token0();
        address token1 = IV3SwapPool(pool).token1();
        address expected = _v3PoolAddress(factory, token0, token1, fee);
        if (pool != expected) revert NotAPool(pool, expected);
        return abi.encode(factory, token0, token1, fee);
    }

    /// PoolAddress.computeAddress of v3-periphery: create2(factory, keccak(abi.encode(token0, token1, fee)), init code hash).
    function _v3PoolAddress(address factory, address token0, address token1, uint24 fee)
        private
        pure
        returns (address)
    {
        bytes32 salt = keccak256(abi.encode(token0, token1, fee));
        return address(uint160(uint256(keccak256(abi.encodePacked(hex"ff", factory, salt, POOL_INIT_CODE_HASH)))));
    }
}
