// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {IV2Pair} from "./Interfaces.sol";

interface IV2FactoryView {
    function allPairsLength() external view returns (uint256);
    function allPairs(uint256) external view returns (address);
}

/// Read-only batch reader for pool discovery and reserves. Never deployed on a real chain:
/// arbscan places its runtime code at an unused address with an `eth_call` state override,
/// so one call reads hundreds of pools on any node that supports overrides.
contract PoolLens {
    struct PoolInfo {
        address pair;
        address token0;
        address token1;
        uint112 reserve0;
        uint112 reserve1;
    }

    /// Pairs `start` .. `end - 1` of a V2 factory with their tokens and reserves.
    function pairsOf(address factory, uint256 start, uint256 end) external view returns (PoolInfo[] memory out) {
        uint256 total = IV2FactoryView(factory).allPairsLength();
        if (end > total) end = total;
        if (start >= end) return new PoolInfo[](0);
        out = new PoolInfo[](end - start);
        for (uint256 i = start; i < end; i++) {
            IV2Pair pair = IV2Pair(IV2FactoryView(factory).allPairs(i));
            (uint112 r0, uint112 r1,) = pair.getReserves();
            out[i - start] = PoolInfo(address(pair), pair.token0(), pair.token1(), r0, r1);
        }
    }

    /// Reserves of many pairs in one call; the block number says which state they are from.
    function reservesOf(address[] calldata pairs) external view returns (uint256 blockNumber, uint112[2][] memory out) {
        out = new uint112[2][](pairs.length);
        for (uint256 i = 0; i < pairs.length; i++) {
            (uint112 r0, uint112 r1,) = IV2Pair(pairs[i]).getReserves();
            out[i] = [r0, r1];
        }
        blockNumber = block.number;
    }
}
