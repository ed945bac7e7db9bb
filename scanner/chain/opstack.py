"""The OP-stack fee predeploys on a local anvil: the canonical `GasPriceOracle` and `L1Block`,
as published in `@eth-optimism/contracts-bedrock` (installed by `deploy/setup.sh`).

`anvil --optimism` runs OP-stack transactions but has no `GasPriceOracle`, so `install` places the
published runtime bytecode at the predeploy addresses with `anvil_setCode` and then does what the
real chain did: the depositor account switched the oracle to Ecotone, then to Fjord, and sets the
L1 values every block with `setL1BlockValuesEcotone`. From then on `getL1Fee(tx)` answers with the
Fjord formula that `scanner.gas.l1fee` implements.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from typing import Any

from eth_utils import to_checksum_address
from web3 import Web3
from web3.contract import Contract
from web3.types import TxParams

from scanner.chain.artifacts import REPO_ROOT
from scanner.chain.v3 import send
from scanner.errors import ChainError, SetupError
from scanner.gas.l1fee import FjordFeeParams

GAS_PRICE_ORACLE = to_checksum_address("0x420000000000000000000000000000000000000F")
L1_BLOCK = to_checksum_address("0x4200000000000000000000000000000000000015")
# Constants.DEPOSITOR_ACCOUNT: the system address that sends the L1-attributes deposit of each block
DEPOSITOR = to_checksum_address("0xDeaDDEaDDeAdDeAdDEAdDEaddeAddEAdDEAd0001")
BEDROCK_ARTIFACTS = REPO_ROOT / "node_modules/@eth-optimism/contracts-bedrock/forge-artifacts"
SET_L1_BLOCK_VALUES_ECOTONE = bytes.fromhex("440a5e20")  # setL1BlockValuesEcotone(), packed arguments follow
# wei for the impersonated depositor: on anvil its transactions are ordinary ones that pay gas and,
# under --optimism, an L1 fee at whatever L1 values it set last (a real deposit pays neither)
_DEPOSITOR_BALANCE = 2**160
# reads are sent from the depositor too: an OP-stack anvil checks an eth_call's sender for the L1 fee
_READ: TxParams = {"from": DEPOSITOR}


@dataclass(frozen=True)
class Predeploy:
    """ABI and runtime bytecode of one contract of the published bedrock build."""

    name: str
    abi: list[dict[str, Any]]
    deployed_bytecode: str


@cache
def load_predeploy(name: str) -> Predeploy:
    """`forge-artifacts/<name>.sol/<name>.json` of `@eth-optimism/contracts-bedrock`."""
    path = BEDROCK_ARTIFACTS / f"{name}.sol" / f"{name}.json"
    if not path.is_file():
        raise SetupError(f"{path} is missing: run `bash deploy/setup.sh` to install @eth-optimism/contracts-bedrock")
    data = json.loads(path.read_text())
    return Predeploy(name, data["abi"], data["deployedBytecode"]["object"])


@dataclass(frozen=True)
class L1Origin:
    """The rest of what one L1-attributes deposit stores: which L1 block the L2 block follows."""

    number: int = 20_000_000
    timestamp: int = 1_720_000_000
    hash: bytes = bytes(32)
    sequence_number: int = 0
    batcher_hash: bytes = bytes(32)


def ecotone_calldata(params: FjordFeeParams, origin: L1Origin = L1Origin()) -> bytes:
    """The packed calldata of `setL1BlockValuesEcotone`, in the order the contract's assembly reads it:
    baseFeeScalar u32, blobBaseFeeScalar u32, sequenceNumber u64, timestamp u64, number u64,
    basefee u256, blobBaseFee u256, hash b32, batcherHash b32."""
    return (SET_L1_BLOCK_VALUES_ECOTONE
            + params.base_fee_scalar.to_bytes(4, "big") + params.blob_base_fee_scalar.to_bytes(4, "big")
            + origin.sequence_number.to_bytes(8, "big") + origin.timestamp.to_bytes(8, "big")
            + origin.number.to_bytes(8, "big")
            + params.l1_base_fee.to_bytes(32, "big") + params.blob_base_fee.to_bytes(32, "big")
            + origin.hash + origin.batcher_hash)


@dataclass(frozen=True)
class OpStackOracle:
    """The installed `GasPriceOracle` and `L1Block` of one anvil."""

    w3: Web3
    oracle: Contract
    l1_block: Contract

    @classmethod
    def install(cls, w3: Web3) -> OpStackOracle:
        """Place both predeploys, activate Ecotone then Fjord from the depositor, as OP Mainnet did."""
        for address, name in ((GAS_PRICE_ORACLE, "GasPriceOracle"), (L1_BLOCK, "L1Block")):
            w3.provider.make_request("anvil_setCode", [address, load_predeploy(name).deployed_bytecode])  # type: ignore[arg-type]
        w3.provider.make_request("anvil_setBalance", [DEPOSITOR, hex(_DEPOSITOR_BALANCE)])  # type: ignore[arg-type]
        w3.provider.make_request("anvil_impersonateAccount", [DEPOSITOR])  # type: ignore[arg-type]
        node = cls(w3, w3.eth.contract(address=GAS_PRICE_ORACLE, abi=load_predeploy("GasPriceOracle").abi),
                   w3.eth.contract(address=L1_BLOCK, abi=load_predeploy("L1Block").abi))
        send(w3, node.oracle.functions.setEcotone(), sender=DEPOSITOR)
        send(w3, node.oracle.functions.setFjord(), sender=DEPOSITOR)
        if not node.oracle.functions.isFjord().call(_READ):
            raise ChainError(f"GasPriceOracle at {GAS_PRICE_ORACLE} did not switch to Fjord")
        return node

    def set_l1_values(self, params: FjordFeeParams, origin: L1Origin = L1Origin()) -> None:
        """Store new L1 fees and scalars the way each L2 block's first (deposit) transaction does."""
        tx_hash = self.w3.eth.send_transaction({"from": DEPOSITOR, "to": L1_BLOCK, "data": ecotone_calldata(params, origin)})
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=10, poll_latency=0.002)
        if receipt["status"] != 1:
            raise ChainError(f"setL1BlockValuesEcotone{params} reverted in {tx_hash.to_0x_hex()}")

    def params(self) -> FjordFeeParams:
        """The values the oracle reads now, read back through its own getters."""
        f = self.oracle.functions
        return FjordFeeParams(f.l1BaseFee().call(_READ), f.blobBaseFee().call(_READ), f.baseFeeScalar().call(_READ),
                              f.blobBaseFeeScalar().call(_READ))

    def l1_fee(self, tx: bytes) -> int:
        """`getL1Fee(tx)`."""
        return self.oracle.functions.getL1Fee(tx).call(_READ)

    def l1_gas_used(self, tx: bytes) -> int:
        """`getL1GasUsed(tx)`: pins the FastLZ length, one compressed byte ≈ 13 L1 gas."""
        return self.oracle.functions.getL1GasUsed(tx).call(_READ)


def read_l1_block(w3: Web3, block: int) -> FjordFeeParams:
    """The Fjord fee inputs as the chain's `L1Block` predeploy holds them at `block` (what the gas
    oracle publishes each block, so that the ranking charges each route its L1 data fee)."""
    f = w3.eth.contract(address=L1_BLOCK, abi=load_predeploy("L1Block").abi).functions
    read: TxParams = {**_READ, "to": L1_BLOCK}
    return FjordFeeParams(f.basefee().call(read, block), f.blobBaseFee().call(read, block),
                          f.baseFeeScalar().call(read, block), f.blobBaseFeeScalar().call(read, block))
