// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// Spam for the simulated market: a call that consumes a chosen amount of gas fills blocks and
/// so moves the EIP-1559 base fee, without touching any state.
contract GasBurner {
    /// Loops until `gasAmount` gas has gone since entry (overshoots by one iteration at most).
    function burn(uint256 gasAmount) external view {
        uint256 start = gasleft();
        while (start - gasleft() < gasAmount) {}
    }
}
