// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// Reference prices with the read interface of Aave V3's AaveOracle (`getAssetPrice`,
/// `getAssetsPrices`, `BASE_CURRENCY_UNIT`), so watchers read the local market's fair prices and
/// a production oracle the same way. Prices are per whole token in the base currency; the local
/// market quotes them in WETH with 18 decimals and updates every token once per block.
contract PriceOracle {
    uint256 public constant BASE_CURRENCY_UNIT = 1e18;
    address public immutable owner;
    mapping(address => uint256) private prices;

    event AssetPricesUpdated(uint256 count, uint256 blockNumber);

    error NotOwner();
    error LengthMismatch();
    error NoPrice(address asset);

    constructor(address owner_) {
        owner = owner_;
    }

    function setAssetPrices(address[] calldata assets, uint256[] calldata newPrices) external {
        if (msg.sender != owner) revert NotOwner();
        if (assets.length != newPrices.length) revert LengthMismatch();
        for (uint256 i = 0; i < assets.length; i++) {
            prices[assets[i]] = newPrices[i];
        }
        emit AssetPricesUpdated(assets.length, block.number);
    }

    /// Reverts for an asset that was never priced: a zero price would read as a free token.
    function getAssetPrice(address asset) public view returns (uint256 price) {
        price = prices[asset];
        if (price == 0) revert NoPrice(asset);
    }

    function getAssetsPrices(address[] calldata assets) external view returns (uint256[] memory out) {
        out = new uint256[](assets.length);
        for (uint256 i = 0; i < assets.length; i++) {
            out[i] = getAssetPrice(assets[i]);
        }
    }
}
