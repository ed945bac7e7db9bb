"""Compiled contracts for Python: artifacts from `contracts/artifacts`, deployment, and addresses.

The artifacts are committed outputs of `node contracts/compile.js` (our sources) and verbatim
copies of `@uniswap/v2-core`'s official build (the canonical factory and pair), so nothing here
needs a compiler at run time.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, cast

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import keccak, to_bytes, to_checksum_address
from eth_utils.abi import filter_abi_by_type, function_abi_to_4byte_selector, get_abi_input_names, get_abi_input_types
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractLogicError, TimeExhausted, Web3RPCError

from scanner.errors import ChainError, SetupError

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS_DIR = REPO_ROOT / "contracts" / "artifacts"

# keccak256 of the canonical UniswapV2Pair creation code: the mainnet factory's pairs sit at the
# create2 address derived from it, and so do the pairs of a factory deployed from the shipped build.
CANONICAL_INIT_CODE_HASH = HexBytes("0x96e8ac4277198ff8b6f785478aa9a39f403cb768dd02cbee326c3e7da348845f")

_RECEIPT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Artifact:
    """ABI and creation bytecode (0x-hex) of one contract; cached, so treat `abi` as read-only."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str  # runtime code: what an eth_call state override places at an address

    @property
    def init_code_hash(self) -> HexBytes:
        """keccak256 of the creation code: what create2 addresses of this contract derive from."""
        return HexBytes(keccak(hexstr=self.bytecode))


@cache
def load_artifact(name: str) -> Artifact:
    """The artifact `contracts/artifacts/<name>.json`, with a fix-it message when it is missing."""
    path = ARTIFACTS_DIR / f"{name}.json"
    if not path.is_file():
        raise SetupError(
            f"contract artifact {path} is missing: run `node contracts/compile.js` "
            "(after `bash deploy/setup.sh` has installed solc and @uniswap/v2-core)"
        )
    data = json.loads(path.read_text())
    return Artifact(
        name=data["contractName"], abi=data["abi"], bytecode=data["bytecode"], deployed_bytecode=data["deployedBytecode"]
    )


def deploy(w3: Web3, name: str, *args: Any, sender: str | None = None) -> Contract:
    """Deploy `name` with constructor `args` from `sender` (default: the node's first account).

    Assumes the node mines the transaction on its own (anvil's automine); the receipt wait is short.
    """
    artifact = load_artifact(name)
    sender = sender or w3.eth.accounts[0]
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    try:
        tx_hash = factory.constructor(*args).transact({"from": sender})
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=_RECEIPT_TIMEOUT_S, poll_latency=0.002)
    except ContractLogicError as exc:
        raise ChainError(f"deploying {name}{args!r} reverted: {describe_revert(name, exc)}") from exc
    except Web3RPCError as exc:
        raise ChainError(f"deploying {name}{args!r} failed: {exc}") from exc
    except TimeExhausted as exc:
        raise ChainError(
            f"deploying {name}: no receipt within {_RECEIPT_TIMEOUT_S:.0f} s; is the node mining (automine)?"
        ) from exc
    if receipt["status"] != 1 or not receipt["contractAddress"]:
        raise ChainError(f"deploying {name}{args!r} reverted in transaction {tx_hash.to_0x_hex()}")
    return w3.eth.contract(address=receipt["contractAddress"], abi=artifact.abi)


@cache
def _encoders(name: str, function: str) -> dict[int, tuple[bytes, tuple[str, ...]]]:
    """Contract `name`'s function `function`: selector and argument types, by argument count."""
    found = {len(f["inputs"]): (function_abi_to_4byte_selector(f), tuple(get_abi_input_types(f)))
             for f in filter_abi_by_type("function", cast(Any, load_artifact(name).abi)) if f["name"] == function}
    if not found:
        raise SetupError(f"contract {name} has no function {function}: its artifact's ABI lists none by that name")
    return found


def calldata(name: str, function: str, *args: Any) -> bytes:
    """The calldata of `name.function(*args)` (an overload chosen by argument count), without a node:
    web3's `Contract.encode_abi` takes ~1.3 ms a call, this ~0.05 ms, and a 10,000-pool market
    sends 40,000 set-up calls."""
    encoders = _encoders(name, function)
    if len(args) not in encoders:
        raise TypeError(f"{name}.{function} takes {' or '.join(map(str, sorted(encoders)))} arguments, got {len(args)}")
    selector, types = encoders[len(args)]
    return selector + abi_encode(types, args)


def describe_revert(name: str, exc: ContractLogicError) -> str:
    """A revert as text, with custom errors of contract `name` decoded (web3 leaves them as hex).

    e.g. `InsufficientProfit(amountOut=1000, required=1001)`; revert strings and panics keep web3's message.
    """
    data = exc.data if isinstance(exc.data, str) else None
    if data and data.startswith("0x") and len(data) >= 10:
        raw = bytes.fromhex(data[2:])
        for error in filter_abi_by_type("error", cast(Any, load_artifact(name).abi)):
            if function_abi_to_4byte_selector(error) == raw[:4]:
                values = abi_decode(get_abi_input_types(error), raw[4:])
                fields = ", ".join(f"{k}={v}" for k, v in zip(get_abi_input_names(error), values))
                return f"{error['name']}({fields})"
    return exc.message or str(exc)


def at(w3: Web3, name: str, address: str) -> Contract:
    """The contract `name`'s ABI bound to `address` (any case, checksummed here)."""
    return w3.eth.contract(address=to_checksum_address(address), abi=load_artifact(name).abi)


def pair_address(
    factory: str, token_a: str, token_b: str, init_code_hash: bytes = CANONICAL_INIT_CODE_HASH
) -> str:
    """Address of a V2 pair without a call: create2(factory, keccak(token0 ++ token1), init code hash).

    Pass `load_artifact("FeePair").init_code_hash` for pairs of a FeeFactory.
    """
    token0, token1 = sorted((to_bytes(hexstr=token_a), to_bytes(hexstr=token_b)))
    salt = keccak(token0 + token1)
    return to_checksum_address(keccak(b"\xff" + to_bytes(hexstr=factory) + salt + bytes(init_code_hash))[12:])


# keccak256 of the canonical UniswapV3Pool creation code (mainnet's POOL_INIT_CODE_HASH): the V3
# factory deploys each pool with create2 from it, so a factory deployed from the shipped build
# puts its pools where mainnet's would be for the same factory address.
CANONICAL_V3_POOL_INIT_CODE_HASH = HexBytes("0xe34f199b19b2b4f47f68442619d555527d244f78a3297ea89325f843f87b8b54")


def v3_pool_address(
    factory: str, token_a: str, token_b: str, fee: int, init_code_hash: bytes = CANONICAL_V3_POOL_INIT_CODE_HASH
) -> str:
    """Address of a V3 pool without a call: create2(factory, keccak(abi.encode(token0, token1, fee)), hash).

    As V3's PoolAddress.computeAddress: the salt abi-encodes the sorted tokens and the fee (uint24).
    """
    token0, token1 = sorted((to_bytes(hexstr=token_a), to_bytes(hexstr=token_b)))
    salt = keccak(token0.rjust(32, b"\0") + token1.rjust(32, b"\0") + int(fee).to_bytes(32, "big"))
    return to_checksum_address(keccak(b"\xff" + to_bytes(hexstr=factory) + salt + bytes(init_code_hash))[12:])
