// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {FeePair} from "./FeePair.sol";

/// Uniswap V2 factory whose pairs all charge `feeBps` (over 10_000). One factory = one DEX of
/// the simulated market; its interface and events are the canonical factory's plus `feeBps`.
contract FeeFactory {
    uint16 public immutable feeBps;
    address public feeTo;
    address public feeToSetter;

    mapping(address => mapping(address => address)) public getPair;
    address[] public allPairs;

    event PairCreated(address indexed token0, address indexed token1, address pair, uint256);

    error FeeTooHigh(uint16 feeBps);

    constructor(address _feeToSetter, uint16 _feeBps) {
        if (_feeBps >= 10_000) revert FeeTooHigh(_feeBps);
        feeToSetter = _feeToSetter;
        feeBps = _feeBps;
    }

    function allPairsLength() external view returns (uint256) {
        return allPairs.length;
    }

    /// create2 with salt keccak256(token0, token1), as the canonical factory, so pair addresses
    /// follow from keccak256(FeePair creation code) without a call.
    function createPair(address tokenA, address tokenB) external returns (address pair) {
        require(tokenA != tokenB, "UniswapV2: IDENTICAL_ADDRESSES");
        (address token0, address token1) = tokenA < tokenB ? (tokenA, tokenB) : (tokenB, tokenA);
        require(token0 != address(0), "UniswapV2: ZERO_ADDRESS");
        require(getPair[token0][token1] == address(0), "UniswapV2: PAIR_EXISTS");
        pair = address(new FeePair{salt: keccak256(abi.encodePacked(token0, token1))}());
        FeePair(pair).initialize(token0, token1);
        getPair[token0][token1] = pair;
        getPair[token1][token0] = pair;
        allPairs.push(pair);
        emit PairCreated(token0, token1, pair, allPairs.length);
    }

    function setFeeTo(address _feeTo) external {
        require(msg.sender == feeToSetter, "UniswapV2: FORBIDDEN");
        feeTo = _feeTo;
    }

    function setFeeToSetter(address _feeToSetter) external {
        require(msg.sender == feeToSetter, "UniswapV2: FORBIDDEN");
        feeToSetter = _feeToSetter;
    }
}
