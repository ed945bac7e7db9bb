"""The one configuration of arbscan: a TOML file checked key by key against these dataclasses.

Every field has a documented default; an unknown key, a missing required key or a value of the
wrong type raises `ConfigError` naming the key (`dexes[1].fee_bps`) and the expected type.
"""
from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path

from scanner.errors import ConfigError

LOCAL_CHAIN_ID = 31337
"""anvil's chain id: the only chain arbscan ever sends a transaction to."""

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


@dataclass(frozen=True)
class ChainConfig:
    """Where the node is. `rpc_url_env` names an environment variable that overrides `rpc_url`."""

    rpc_url: str = "http://127.0.0.1:8545"
    rpc_url_env: str = ""
    ws_url: str = ""  # newHeads subscription that wakes the watchers ("" = poll only)
    chain_id: int = LOCAL_CHAIN_ID
    poll_interval_s: float = 0.25
    request_timeout_s: float = 10.0
    max_retries: int = 6

    def resolved_rpc_url(self, key: str = "chain") -> str:
        """`rpc_url`, or the value of the variable `rpc_url_env` names (an error naming `key` when unset)."""
        if self.rpc_url_env:
            value = os.environ.get(self.rpc_url_env, "")
            if not value:
                raise ConfigError(f"{key}.rpc_url_env names {self.rpc_url_env}, which is not set: export it to "
                                  "your node's URL")
            return value
        return self.rpc_url


DEX_KINDS = ("uniswap-v2", "uniswap-v3")
"""The pool kinds arbscan quotes exactly: constant product (V2 and its forks), concentrated liquidity (V3)."""


@dataclass(frozen=True)
class DexConfig:
    """One DEX: its factory and what kind of pools it creates.

    `uniswap-v2`: pairs charge `fee_bps` basis points. `uniswap-v3`: pools are found from the
    factory's PoolCreated logs from `from_block` on, for the fee tiers in `fees` (hundredths of a
    bip: 500 = 0.05 %); `fee_bps` is ignored. `init_code_hash` ("" = the kind's canonical hash) is
    what a pool's create2 address is derived with; the executor pays only pools whose address it
    derives from the factory, so a fork with another hash needs its own executor build.
    """

    name: str
    factory: str
    fee_bps: int = 30
    kind: str = "uniswap-v2"
    fees: list[int] = field(default_factory=lambda: [500, 3000, 10000])
    init_code_hash: str = ""
    from_block: int = 0


@dataclass(frozen=True)
class TokensConfig:
    """Cycles start and end at a base token; `max_pools` caps discovery per factory (0 = all).

    `price_oracle`: an oracle with Aave V3's read interface (`getAssetsPrices(address[])`) that
    prices every token of the pools; watchers read it each block for the LSTM's price-gap feature
    ("" = none: the gap reads 0 and the shipped model loses its main signal).
    """

    base: list[str] = field(default_factory=list)
    max_pools: int = 0
    price_oracle: str = ""


FEE_RULES = ("ethereum", "optimism", "base", "arbitrum")
"""Named base-fee rules (`scanner.gas.fees`: ETHEREUM, OPTIMISM, BASE, ARBITRUM, sources there)."""
L1_FEES = ("none", "op-stack", "arbitrum")
"""What a transaction pays for L1 besides its L2 gas: nothing, the OP-stack Fjord data fee
(`scanner.gas.l1fee`, read from the chain's L1Block predeploy), or Arbitrum's poster fee
(`scanner.gas.arbitrum`, read from the ArbGasInfo and ArbOwnerPublic precompiles)."""
DEFAULT_CHAIN = "main"
STALE_BLOCKS = 3
"""The name of the one chain of a single-chain config (`[chain]`, `[[dexes]]`, `[tokens]`)."""


@dataclass(frozen=True, kw_only=True)
class ChainSpec(ChainConfig):
    """One `[[chains]]` table: a chain's node (the `[chain]` keys), its fee rules, DEXes and base tokens.

    `eip1559` names the base-fee rules (one of `FEE_RULES`); `eip1559_elasticity` and
    `eip1559_denominator` (both > 0) replace them with EIP-1559 at those numbers. `block_time_s` is
    how often the chain makes a block: a chain whose last ranked block is `STALE_BLOCKS` of them old is
    reported degraded. `executor` is the chain's ArbExecutor: its submitter simulates (and, on the local
    chain only, sends) through it, and its calldata prices the L1 data fee; on the default chain an
    empty one means `submitter.executor`, on another no submitter.
    """

    name: str
    chain_id: int = field()  # required here (an explicit field, not the inherited default)
    block_time_s: float = 12.0
    eip1559: str = "ethereum"
    eip1559_elasticity: int = 0
    eip1559_denominator: int = 0
    l1_fee: str = "none"
    dexes: list[DexConfig] = field(default_factory=list)
    tokens: TokensConfig = field(default_factory=TokensConfig)
    executor: str = ""

    @property
    def node(self) -> ChainConfig:
        """The `[chain]` part: where and how to reach the node."""
        return ChainConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(ChainConfig)})


@dataclass(frozen=True)
class GasConfig:
    """Tips are percentiles of the last `history_blocks` blocks; `feeds` are AggregatorV3 gas feeds."""

    history_blocks: int = 5
    percentiles: list[float] = field(default_factory=lambda: [25.0, 50.0, 75.0])
    feeds: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class WatchersConfig:
    shards: int = 2
    backfill_max_blocks: int = 256


@dataclass(frozen=True)
class InferenceConfig:
    """Dynamic batching: a batch runs at `max_batch` rows or when the oldest waited `max_delay_ms`."""

    checkpoint: str = ""
    max_batch: int = 256
    max_delay_ms: float = 2.0
    device: str = "auto"


@dataclass(frozen=True)
class AggregatorConfig:
    """`max_hops`: the longest cycle ranked, 2 to 6 (each hop more multiplies the cycles: 3 keeps a
    mainnet-sized pool set within a block, 4 finds the 4-hop arbitrages real bots run)."""

    top_n: int = 10
    shard_timeout_s: float = 2.0
    failed_attempt_gas: int = 60_000
    max_hops: int = 4


@dataclass(frozen=True)
class SocketsConfig:
    """ZeroMQ endpoints. A query or publish socket off loopback needs CURVE key files."""

    query: str = "tcp://127.0.0.1:7780"
    publish: str = "tcp://127.0.0.1:7781"
    # Where the actors' own data-plane sockets bind: a host (loopback by default, which keeps every
    # actor on one node), or "node": each binding actor binds on its own node's IP (multi-node clusters).
    data_host: str = "127.0.0.1"
    curve_secret_key_file: str = ""
    curve_authorized_keys_dir: str = ""


@dataclass(frozen=True)
class SubmitterConfig:
    """Simulated submission of the best opportunities; sends only on the local chain (`LOCAL_CHAIN_ID`).
    With several chains, every chain with an executor gets a submitter of its own, set up like this."""

    enabled: bool = True
    top_k: int = 3
    executor: str = ""
    private_key_env: str = "ARBSCAN_PRIVATE_KEY"
    private_key_file: str = ""  # preferred over the environment variable; keep it mode 0600
    tip_gwei: float = 2.0  # the "fixed" policy's tip
    # "fixed": every transaction tips tip_gwei; "ev": each tip maximizes expected profit under the tip model
    # (`tip_model`, a JSON file written by `arbscan eval --tip`) of P(win | tip, opportunity size)
    tip_policy: str = "fixed"
    tip_model: str = ""
    send_on_local_chain: bool = True
    journal: str = "arbscan-journal.sqlite"  # the default chain's; chain NAME's adds "-NAME" to the file's stem

    def journal_of(self, chain: str, default: bool) -> str:
        """The journal of `chain`'s submitter (one SQLite file per chain: each has its own blocks)."""
        path = Path(self.journal)
        return self.journal if default else str(path.with_name(f"{path.stem}-{chain}{path.suffix}"))


@dataclass(frozen=True)
class RayConfig:
    """The Ray cluster and where the launcher places actors on it.

    `aggregator_node`: the node that runs the aggregator with its query API (and the gas oracle and
    submitter): "head", a node's IP, or a Ray node id. `inference_resource`: a custom resource
    (e.g. "gpu_node", or an accelerator type) that marks the node for the inference actor when the
    cluster has no GPU; "" = none. A GPU, when the cluster has one, always wins.
    """

    address: str = ""
    dashboard_host: str = "127.0.0.1"
    num_cpus: int = 0
    aggregator_node: str = "head"
    inference_resource: str = ""


@dataclass(frozen=True)
class Config:
    chain: ChainConfig = field(default_factory=ChainConfig)
    dexes: list[DexConfig] = field(default_factory=list)
    tokens: TokensConfig = field(default_factory=TokensConfig)
    gas: GasConfig = field(default_factory=GasConfig)
    watchers: WatchersConfig = field(default_factory=WatchersConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    aggregator: AggregatorConfig = field(default_factory=AggregatorConfig)
    sockets: SocketsConfig = field(default_factory=SocketsConfig)
    submitter: SubmitterConfig = field(default_factory=SubmitterConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    # Several chains: one table each. With them, `chain`, `dexes` and `tokens` are the first one's
    # (the default chain); without them, those three are the one chain, named `DEFAULT_CHAIN`.
    chains: list[ChainSpec] = field(default_factory=list)

    @property
    def rpc_url(self) -> str:
        return self.chain.resolved_rpc_url("chain" if not self.chains else "chains[0]")

    def networks(self) -> list[ChainSpec]:
        """Every chain to scan, the default one first."""
        if self.chains:
            default = self.chains[0]
            return [dataclasses.replace(default, executor=default.executor or self.submitter.executor), *self.chains[1:]]
        return [ChainSpec(**dataclasses.asdict(self.chain), name=DEFAULT_CHAIN, dexes=self.dexes, tokens=self.tokens,
                          executor=self.submitter.executor)]


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value, tp, key: str):
    """Check `value` against the annotation `tp`, building nested dataclasses."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table, got {type(value).__name__}")
        return _build(tp, value, key)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list of {_type_name(item_tp)}, got {type(value).__name__}")
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp in (str, bool) and not isinstance(value, tp):
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    return value


def _build(cls, data: dict, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for k in data:
        if k not in names:
            where = f"{prefix}.{k}" if prefix else k
            raise ConfigError(f"unknown config key {where!r}; known keys here: {', '.join(sorted(names))}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}" if prefix else f.name
        if f.name in data:
            kwargs[f.name] = _coerce(data[f.name], hints[f.name], key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing required config key {key!r} ({_type_name(hints[f.name])})")
    return cls(**kwargs)


SINGLE_CHAIN_SECTIONS = ("chain", "dexes", "tokens")


def from_dict(data: dict) -> Config:
    config = _build(Config, data)
    if config.chains:
        mixed = [s for s in SINGLE_CHAIN_SECTIONS if s in data]
        if mixed:
            raise ConfigError(f"{', '.join(mixed)}: with [[chains]] tables, each chain carries its own node keys, "
                              "[[chains.dexes]] and [chains.tokens]; move these into the chains they belong to "
                              "(a config without [[chains]] is the one chain they describe)")
        first = config.chains[0]
        config = dataclasses.replace(config, chain=first.node, dexes=first.dexes, tokens=first.tokens)
    validate(config)
    return config


def load(path: str | Path) -> Config:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None
    return from_dict(data)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return "[" + ", ".join(_toml_value(v) for v in value) + "]"


def _dump_table(obj, header: str, lines: list[str]) -> None:
    """`obj`'s plain keys under `header`, then its tables and arrays of tables under dotted names."""
    lines.append(header)
    nested = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value) or (isinstance(value, list) and value and dataclasses.is_dataclass(value[0])):
            nested.append((f.name, value))
        else:
            lines.append(f"{f.name} = {_toml_value(value)}")
    lines.append("")
    prefix = header.strip("[]")
    for name, value in nested:
        for item in value if isinstance(value, list) else [value]:
            kind = "[[{}]]" if isinstance(value, list) else "[{}]"
            _dump_table(item, kind.format(f"{prefix}.{name}" if prefix else name), lines)


def dump(config: Config) -> str:
    """`config` as TOML that `load` reads back to an equal Config."""
    lines: list[str] = []
    skip = SINGLE_CHAIN_SECTIONS if config.chains else ()  # they are the first chain's, written there
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name in skip:
            continue
        if isinstance(value, list):  # arrays of tables: [[dexes]], [[chains]]
            for item in value:
                _dump_table(item, f"[[{f.name}]]", lines)
            continue
        _dump_table(value, f"[{f.name}]", lines)
    return "\n".join(lines)


def _short(address: str) -> str:
    return f"{address[:6]}…{address[-4:]}"


def _pools_source(dex: DexConfig) -> str:
    """Where discovery finds a DEX's pools (`scanner.chain.discovery`)."""
    if dex.kind == "uniswap-v3":
        return f"{dex.name}: PoolCreated of {_short(dex.factory)} from block {dex.from_block}"
    return f"{dex.name}: pair list of {_short(dex.factory)}"


def summary(config: Config) -> str:
    """One line: each chain with its id, node, fee rules, where its pools come from and its base tokens."""
    chains = []
    for spec in config.networks():
        node = f"${spec.rpc_url_env}" if spec.rpc_url_env else spec.rpc_url
        cap = f", at most {spec.tokens.max_pools} per factory" if spec.tokens.max_pools else ""
        pools = "; ".join(_pools_source(d) for d in spec.dexes) or "no dexes"
        chains.append(f"{spec.name} (chain {spec.chain_id}, node {node}, base fee {spec.eip1559}, L1 fee {spec.l1_fee}): "
                      f"{len(spec.dexes)} dexes ({pools}{cap}), {len(spec.tokens.base)} base tokens")
    return f"{len(chains)} chain{'s' if len(chains) != 1 else ''}: " + " | ".join(chains)


def is_loopback(endpoint: str) -> bool:
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    host = endpoint.split("://", 1)[-1].rsplit(":", 1)[0]
    return host in LOOPBACK_HOSTS


def is_address(value: str) -> bool:
    """0x and 40 hex digits (any case: checksums are the node's concern, not the config's)."""
    return len(value) == 42 and value[:2] == "0x" and all(c in "0123456789abcdefABCDEF" for c in value[2:])


def _validate_dex(key: str, dex: DexConfig) -> None:
    if dex.kind not in DEX_KINDS:
        raise ConfigError(f"{key}.kind {dex.kind!r} is not a known DEX kind: use one of {', '.join(DEX_KINDS)}")
    if not 0 <= dex.fee_bps < 10_000:
        raise ConfigError(f"{key}.fee_bps must be in [0, 10000), got {dex.fee_bps}")
    if dex.kind == "uniswap-v3":
        if not dex.fees or any(not 0 < fee < 1_000_000 or fee % 100 for fee in dex.fees):
            raise ConfigError(f"{key}.fees must list fee tiers in hundredths of a bip, each a multiple of 100 "
                              f"in (0, 1000000) (e.g. [500, 3000, 10000]), got {dex.fees}")
    code_hash = dex.init_code_hash
    if code_hash and not (len(code_hash) == 66 and code_hash[:2] == "0x"
                          and all(c in "0123456789abcdefABCDEF" for c in code_hash[2:])):
        raise ConfigError(f"{key}.init_code_hash must be 0x + 64 hex digits (or empty for the canonical one), "
                          f"got {code_hash!r}")
    if dex.from_block < 0:
        raise ConfigError(f"{key}.from_block must be >= 0, got {dex.from_block}")


def _validate_chain(spec: ChainSpec, node: str, dexes: str, tokens: str) -> None:
    """One chain's rules; `node`, `dexes` and `tokens` are where its keys live (`chain` or `chains[1]`)."""
    for key, value in (("poll_interval_s", spec.poll_interval_s), ("request_timeout_s", spec.request_timeout_s),
                       ("chain_id", spec.chain_id), ("block_time_s", spec.block_time_s)):
        if value <= 0:
            raise ConfigError(f"{node}.{key} must be > 0, got {value}")
    for key, value in (("max_retries", spec.max_retries), ("eip1559_elasticity", spec.eip1559_elasticity),
                       ("eip1559_denominator", spec.eip1559_denominator)):
        if value < 0:
            raise ConfigError(f"{node}.{key} must be >= 0, got {value}")
    if spec.tokens.max_pools < 0:
        raise ConfigError(f"{tokens}.max_pools must be >= 0, got {spec.tokens.max_pools}")
    if spec.eip1559 not in FEE_RULES:
        raise ConfigError(f"{node}.eip1559 {spec.eip1559!r} is not a known fee rule: use one of {', '.join(FEE_RULES)}, "
                          "or set eip1559_elasticity and eip1559_denominator")
    if (spec.eip1559_elasticity > 0) != (spec.eip1559_denominator > 0):
        raise ConfigError(f"{node}.eip1559_elasticity and eip1559_denominator go together: set both (> 0) for "
                          f"EIP-1559 at those numbers, or neither for the {spec.eip1559!r} rules")
    if spec.l1_fee not in L1_FEES:
        raise ConfigError(f"{node}.l1_fee {spec.l1_fee!r} is not a known L1 fee rule: use one of {', '.join(L1_FEES)}")
    addresses = {f"{tokens}.base[{i}]": a for i, a in enumerate(spec.tokens.base)}
    addresses |= {f"{dexes}[{i}].factory": d.factory for i, d in enumerate(spec.dexes)}
    if spec.tokens.price_oracle:
        addresses[f"{tokens}.price_oracle"] = spec.tokens.price_oracle
    for key, address in addresses.items():
        if not is_address(address):
            raise ConfigError(f"{key} must be a 0x-prefixed 20-byte address (0x + 40 hex digits), got {address!r}")
    names = [d.name for d in spec.dexes]
    if len(set(names)) != len(names):
        raise ConfigError(f"{dexes}: names must be unique, got {names}")
    for i, dex in enumerate(spec.dexes):
        _validate_dex(f"{dexes}[{i}]", dex)


def _validate_chains(chains: list[ChainSpec]) -> None:
    """Every [[chains]] table, and what makes them distinct: a name and a chain id each."""
    seen_ids: dict[int, int] = {}
    seen_names: dict[str, int] = {}
    for i, spec in enumerate(chains):
        key = f"chains[{i}]"
        if not spec.name or not all(c.isalnum() or c in "-_" for c in spec.name):
            raise ConfigError(f"{key}.name {spec.name!r} must be letters, digits, - or _ (it names the chain's actors "
                              "and `arbscan top --chain NAME`)")
        if spec.name in seen_names:
            raise ConfigError(f"{key}.name {spec.name!r} is also chains[{seen_names[spec.name]}]'s: names must be unique")
        if spec.chain_id in seen_ids:
            raise ConfigError(f"{key}.chain_id {spec.chain_id} is also chains[{seen_ids[spec.chain_id]}].chain_id: "
                              "each [[chains]] table is one chain; merge their dexes or fix the id")
        seen_names[spec.name], seen_ids[spec.chain_id] = i, i
        _validate_chain(spec, key, f"{key}.dexes", f"{key}.tokens")


def validate(config: Config) -> None:
    """Cross-field rules that types alone cannot say."""
    if config.chains:
        _validate_chains(config.chains)
    else:
        _validate_chain(config.networks()[0], "chain", "dexes", "tokens")
    positive = {
        "watchers.shards": config.watchers.shards,
        "inference.max_batch": config.inference.max_batch,
        "aggregator.top_n": config.aggregator.top_n,
        "gas.history_blocks": config.gas.history_blocks,
        "watchers.backfill_max_blocks": config.watchers.backfill_max_blocks,
        "aggregator.shard_timeout_s": config.aggregator.shard_timeout_s,
        "submitter.top_k": config.submitter.top_k,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{key} must be > 0, got {value}")
    not_negative = {
        "inference.max_delay_ms": config.inference.max_delay_ms,
        "aggregator.failed_attempt_gas": config.aggregator.failed_attempt_gas,
        "submitter.tip_gwei": config.submitter.tip_gwei,
        "ray.num_cpus": config.ray.num_cpus,
    }
    for key, value in not_negative.items():
        if value < 0:
            raise ConfigError(f"{key} must be >= 0, got {value}")
    if config.submitter.tip_policy not in ("fixed", "ev"):
        raise ConfigError(f'submitter.tip_policy must be "fixed" or "ev", got {config.submitter.tip_policy!r}')
    if config.submitter.tip_policy == "ev" and not config.submitter.tip_model:
        raise ConfigError('submitter.tip_policy = "ev" needs submitter.tip_model: a file written by `arbscan eval --tip`')
    if not 2 <= config.aggregator.max_hops <= 6:
        raise ConfigError(f"aggregator.max_hops must be in [2, 6], got {config.aggregator.max_hops}")
    percentiles = config.gas.percentiles
    if len(percentiles) != 3 or sorted(percentiles) != percentiles or not all(0 <= p <= 100 for p in percentiles):
        raise ConfigError(f"gas.percentiles must be three ascending numbers in [0, 100], got {percentiles}")
    addresses = {f"gas.feeds[{i}]": a for i, a in enumerate(config.gas.feeds)}
    if config.submitter.executor:
        addresses["submitter.executor"] = config.submitter.executor
    addresses |= {f"chains[{i}].executor": c.executor for i, c in enumerate(config.chains) if c.executor}
    for key, address in addresses.items():
        if not is_address(address):
            raise ConfigError(f"{key} must be a 0x-prefixed 20-byte address (0x + 40 hex digits), got {address!r}")
    if not config.ray.aggregator_node.strip():
        raise ConfigError('ray.aggregator_node is empty: use "head", a node IP or a Ray node id')
    if config.inference.device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"inference.device must be 'auto', 'cpu' or 'cuda', got {config.inference.device!r}")
    for key in ("query", "publish"):
        endpoint = getattr(config.sockets, key)
        if not is_loopback(endpoint) and not config.sockets.curve_secret_key_file:
            raise ConfigError(
                f"sockets.{key} = {endpoint!r} is not loopback: set sockets.curve_secret_key_file "
                "(and curve_authorized_keys_dir) to serve it with CURVE encryption"
            )
