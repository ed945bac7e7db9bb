"""Configuration validation: every key is checked, and every error names the key and what it expects.

The wrong-type cases are generated from the config dataclasses themselves, so a key added to
`scanner/config.py` is covered here without editing this file.
"""
from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest

from scanner import config as cfg
from scanner.config import Config, ConfigError, dump, from_dict, load

REPO = Path(__file__).resolve().parents[1]
DEX = {"name": "uni", "factory": "0x" + "11" * 20}
CHAIN = {"name": "base", "chain_id": 8453}
ARRAYS = {"dexes": DEX, "chains": CHAIN}  # arrays of tables, and a valid item of each

# What the error message calls each annotation, and a value of some other type.
EXPECTED = {int: ("an integer", "seven"), float: ("a number", "fast"), str: ("str", 12), bool: ("bool", "yes")}


def _sections() -> list[tuple[str, type]]:
    hints = typing.get_type_hints(Config)
    return [(f.name, hints[f.name]) for f in dataclasses.fields(Config)]


def _leaf_keys() -> list[tuple[str, str, object]]:
    """(section, key, annotation) for every key of every section, [[dexes]] included."""
    out = []
    for section, tp in _sections():
        cls = typing.get_args(tp)[0] if typing.get_origin(tp) is list else tp
        hints = typing.get_type_hints(cls)
        out += [(section, f.name, hints[f.name]) for f in dataclasses.fields(cls)]
    return out


def _minimal(section: str, key: str, value) -> dict:
    """A config that is valid except for `section.key = value`."""
    if section in ARRAYS:
        return {section: [dict(ARRAYS[section], **{key: value})]}
    return {section: {key: value}}


def _where(section: str, key: str) -> str:
    return f"{section}[0].{key}" if section in ARRAYS else f"{section}.{key}"


def _wrong(tp) -> tuple[str, object]:
    if typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp)
        return f"a list of {item.__name__}", "not-a-list"
    if dataclasses.is_dataclass(tp):  # a table inside a table: [chains.tokens]
        return "a table", 5
    return EXPECTED[tp]


@pytest.mark.parametrize(("section", "key", "tp"), _leaf_keys(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_key_refuses_a_wrong_type_naming_the_key_and_the_type(section, key, tp):
    expected, value = _wrong(tp)
    where = _where(section, key)
    with pytest.raises(ConfigError) as e:
        from_dict(_minimal(section, key, value))
    message = str(e.value)
    assert where in message and expected in message, message


@pytest.mark.parametrize(("section", "key", "tp"),
                         [k for k in _leaf_keys() if typing.get_origin(k[2]) is list], ids=lambda v: v if isinstance(v, str) else "")
def test_list_items_are_checked_one_by_one(section, key, tp):
    (item,) = typing.get_args(tp)
    expected, wrong = _wrong(item)
    where = _where(section, key) + "[0]"
    with pytest.raises(ConfigError) as e:
        from_dict(_minimal(section, key, [wrong]))
    assert where in str(e.value) and expected in str(e.value), str(e.value)


def test_every_section_must_be_a_table():
    for section, tp in _sections():
        with pytest.raises(ConfigError) as e:
            from_dict({section: 5})
        expected = "a list of" if typing.get_origin(tp) is list else "a table"
        assert section in str(e.value) and expected in str(e.value), str(e.value)
    with pytest.raises(ConfigError, match=r"dexes\[0\]: expected a table"):
        from_dict({"dexes": ["uni"]})


@pytest.mark.parametrize("section", [s for s, _ in _sections()])
def test_unknown_keys_are_named_with_the_known_ones(section):
    data = _minimal(section, "colour", "red")
    where = _where(section, "colour")
    with pytest.raises(ConfigError) as e:
        from_dict(data)
    assert repr(where) in str(e.value) and "known keys here" in str(e.value)
    with pytest.raises(ConfigError, match="unknown config key 'colour'"):
        from_dict({"colour": "red"})


def test_required_dex_keys_are_named_with_their_type():
    with pytest.raises(ConfigError, match=r"missing required config key 'dexes\[0\].factory' \(str\)"):
        from_dict({"dexes": [{"name": "uni"}]})
    with pytest.raises(ConfigError, match=r"missing required config key 'dexes\[1\].name' \(str\)"):
        from_dict({"dexes": [DEX, {"factory": DEX["factory"]}]})


def test_numbers_booleans_and_ints_are_not_confused():
    assert from_dict({"chain": {"poll_interval_s": 1}}).chain.poll_interval_s == 1.0  # an int is a number
    for section, key in (("chain", "max_retries"), ("watchers", "shards"), ("tokens", "max_pools")):
        with pytest.raises(ConfigError, match=f"{section}.{key}: expected an integer, got True"):
            from_dict({section: {key: True}})  # TOML true is not 1
        with pytest.raises(ConfigError, match=f"{section}.{key}: expected an integer, got 2.0"):
            from_dict({section: {key: 2.0}})
    with pytest.raises(ConfigError, match="chain.poll_interval_s: expected a number, got False"):
        from_dict({"chain": {"poll_interval_s": False}})
    with pytest.raises(ConfigError, match="submitter.enabled: expected bool, got 1"):
        from_dict({"submitter": {"enabled": 1}})


@pytest.mark.parametrize(("data", "key"), [
    ({"watchers": {"shards": 0}}, "watchers.shards"),
    ({"inference": {"max_batch": -1}}, "inference.max_batch"),
    ({"aggregator": {"top_n": 0}}, "aggregator.top_n"),
    ({"chain": {"poll_interval_s": 0}}, "chain.poll_interval_s"),
    ({"gas": {"percentiles": [50.0, 25.0, 75.0]}}, "gas.percentiles"),
    ({"gas": {"percentiles": [25.0, 75.0]}}, "gas.percentiles"),
    ({"inference": {"device": "tpu"}}, "inference.device"),
    ({"dexes": [DEX, DEX]}, "dexes"),
    ({"dexes": [dict(DEX, fee_bps=10_000)]}, "dexes[0].fee_bps"),
    ({"dexes": [dict(DEX, fee_bps=-1)]}, "dexes[0].fee_bps"),
    ({"dexes": [dict(DEX, kind="curve")]}, "dexes[0].kind"),
    ({"dexes": [dict(DEX, kind="uniswap-v3", fees=[])]}, "dexes[0].fees"),
    ({"dexes": [dict(DEX, kind="uniswap-v3", fees=[3050])]}, "dexes[0].fees"),
    ({"dexes": [dict(DEX, kind="uniswap-v3", fees=[1_000_000])]}, "dexes[0].fees"),
    ({"dexes": [dict(DEX, init_code_hash="0x1234")]}, "dexes[0].init_code_hash"),
    ({"dexes": [dict(DEX, from_block=-1)]}, "dexes[0].from_block"),
    ({"sockets": {"query": "tcp://0.0.0.0:7780"}}, "sockets.query"),
    ({"sockets": {"publish": "tcp://10.1.2.3:7781"}}, "sockets.publish"),
    ({"tokens": {"price_oracle": "0x123"}}, "tokens.price_oracle"),
    ({"tokens": {"price_oracle": "11" * 21}}, "tokens.price_oracle"),  # 42 characters, no 0x
    ({"tokens": {"price_oracle": "0x" + "g1" * 20}}, "tokens.price_oracle"),
    ({"tokens": {"price_oracle": "0x" + "11" * 21}}, "tokens.price_oracle"),
    ({"tokens": {"base": ["WETH"]}}, "tokens.base[0]"),
    ({"tokens": {"max_pools": -1}}, "tokens.max_pools"),
    ({"gas": {"feeds": ["0x12"]}}, "gas.feeds[0]"),
    ({"dexes": [dict(DEX, factory="uniswap")]}, "dexes[0].factory"),
    ({"submitter": {"executor": "0xabc"}}, "submitter.executor"),
    ({"chain": {"request_timeout_s": -1.0}}, "chain.request_timeout_s"),
    ({"chain": {"chain_id": 0}}, "chain.chain_id"),
    ({"chain": {"max_retries": -1}}, "chain.max_retries"),
    ({"gas": {"history_blocks": 0}}, "gas.history_blocks"),
    ({"gas": {"percentiles": [25.0, 50.0, 101.0]}}, "gas.percentiles"),
    ({"gas": {"percentiles": [-1.0, 50.0, 75.0]}}, "gas.percentiles"),
    ({"watchers": {"backfill_max_blocks": 0}}, "watchers.backfill_max_blocks"),
    ({"aggregator": {"shard_timeout_s": 0.0}}, "aggregator.shard_timeout_s"),
    ({"aggregator": {"failed_attempt_gas": -5}}, "aggregator.failed_attempt_gas"),
    ({"aggregator": {"max_hops": 1}}, "aggregator.max_hops"),
    ({"aggregator": {"max_hops": 7}}, "aggregator.max_hops"),
    ({"inference": {"max_delay_ms": -0.5}}, "inference.max_delay_ms"),
    ({"submitter": {"top_k": 0}}, "submitter.top_k"),
    ({"submitter": {"tip_gwei": -1.0}}, "submitter.tip_gwei"),
    ({"ray": {"num_cpus": -2}}, "ray.num_cpus"),
])
def test_values_types_cannot_express_are_checked_and_named(data, key):
    with pytest.raises(ConfigError) as e:
        from_dict(data)
    assert str(e.value).startswith(key), str(e.value)


def test_off_loopback_sockets_pass_validation_only_with_curve_keys():
    # The socket-level refusal (QueryServer.start) is tested in test_queryserver.py; this is the config gate.
    sockets = {"query": "tcp://0.0.0.0:7780", "publish": "tcp://0.0.0.0:7781", "curve_secret_key_file": "server.key_secret"}
    assert from_dict({"sockets": sockets}).sockets.query == "tcp://0.0.0.0:7780"
    for endpoint in ("tcp://127.0.0.1:1", "tcp://localhost:1", "tcp://[::1]:1", "ipc:///tmp/x", "inproc://x"):
        assert cfg.is_loopback(endpoint), endpoint
    for endpoint in ("tcp://0.0.0.0:1", "tcp://*:1", "tcp://192.168.1.2:1", "tcp://127.0.0.1.evil:1"):
        assert not cfg.is_loopback(endpoint), endpoint


def test_files_load_round_trip_and_report_their_own_errors(tmp_path, monkeypatch):
    for shipped in ("deploy/local.toml", "deploy/mainnet.example.toml"):
        config = load(REPO / shipped)
        again = tmp_path / "again.toml"
        again.write_text(dump(config))
        assert load(again) == config, shipped
    with pytest.raises(ConfigError, match="does not exist"):
        load(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[chain\nrpc_url = 1")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load(bad)
    typed = tmp_path / "typed.toml"
    typed.write_text('[chain]\nmax_retries = "six"\n')
    with pytest.raises(ConfigError, match="chain.max_retries: expected an integer, got 'six'"):
        load(typed)


def test_rpc_url_env_names_the_unset_variable(monkeypatch):
    config = from_dict({"chain": {"rpc_url_env": "ARBSCAN_TEST_NODE_URL"}})
    monkeypatch.delenv("ARBSCAN_TEST_NODE_URL", raising=False)
    with pytest.raises(ConfigError, match="ARBSCAN_TEST_NODE_URL"):
        _ = config.rpc_url
    monkeypatch.setenv("ARBSCAN_TEST_NODE_URL", "http://127.0.0.1:9")
    assert config.rpc_url == "http://127.0.0.1:9"


def test_defaults_are_a_valid_config():
    config = from_dict({})
    assert config == Config() and config.sockets.query.startswith("tcp://127.0.0.1:")
    assert config.submitter.private_key_file == "" and config.chain.chain_id == 31337


def test_price_oracle_is_empty_or_an_address():
    assert from_dict({}).tokens.price_oracle == ""  # no oracle by default: the gap feature reads 0
    for address in ("0x" + "ab" * 20, "0x" + "AB" * 20, "0xd0F350b13465B5251bb03E4bbf9Fa1DbC4a378F3", ""):
        assert from_dict({"tokens": {"price_oracle": address}}).tokens.price_oracle == address
    with pytest.raises(ConfigError) as e:
        from_dict({"tokens": {"price_oracle": "0x123"}})
    assert "tokens.price_oracle" in str(e.value) and "'0x123'" in str(e.value), str(e.value)
    with pytest.raises(ConfigError, match="tokens.price_oracle: expected str"):
        from_dict({"tokens": {"price_oracle": 0x1234}})


def test_price_oracle_survives_dump_and_load(tmp_path):
    config = from_dict({"tokens": {"base": ["0x" + "22" * 20], "price_oracle": "0x" + "33" * 20}})
    path = tmp_path / "oracle.toml"
    path.write_text(dump(config))
    assert load(path) == config and load(path).tokens.price_oracle == "0x" + "33" * 20


def test_a_single_chain_config_is_the_one_default_chain():
    config = load(REPO / "deploy/mainnet.example.toml")
    (chain,) = config.networks()
    assert chain.name == cfg.DEFAULT_CHAIN and chain.node == config.chain and chain.dexes == config.dexes
    assert (chain.eip1559, chain.l1_fee, chain.tokens) == ("ethereum", "none", config.tokens)


def test_chains_tables_load_with_the_first_as_default_and_round_trip(tmp_path):
    config = load(REPO / "deploy/l2.example.toml")
    assert [(c.name, c.chain_id, c.eip1559, c.l1_fee) for c in config.networks()] == [
        ("arbitrum", 42161, "arbitrum", "arbitrum"), ("base", 8453, "base", "op-stack"),
        ("optimism", 10, "optimism", "op-stack")]
    assert config.chain == config.chains[0].node and config.dexes == config.chains[0].dexes  # the default chain
    again = tmp_path / "again.toml"
    again.write_text(dump(config))
    assert load(again) == config


@pytest.mark.parametrize(("chains", "extra", "message"), [
    ([CHAIN, dict(CHAIN, name="base2")], {}, r"^chains\[1\]\.chain_id 8453 is also chains\[0\]\.chain_id"),
    ([CHAIN, dict(CHAIN, chain_id=10)], {}, r"^chains\[1\]\.name 'base' is also chains\[0\]'s"),
    ([CHAIN, dict(CHAIN, name="op", chain_id=10, eip1559="fast")], {}, r"^chains\[1\]\.eip1559 'fast' is not a known fee rule"),
    ([dict(CHAIN, l1_fee="zk")], {}, r"^chains\[0\]\.l1_fee 'zk' is not a known L1 fee rule: use one of none, op-stack"),
    ([dict(CHAIN, eip1559_elasticity=6)], {}, r"^chains\[0\]\.eip1559_elasticity and eip1559_denominator go together"),
    ([dict(CHAIN, name="a b")], {}, r"^chains\[0\]\.name 'a b' must be letters"),
    ([dict(CHAIN, dexes=[DEX, DEX])], {}, r"^chains\[0\]\.dexes: names must be unique"),
    ([dict(CHAIN, tokens={"base": ["WETH"]})], {}, r"^chains\[0\]\.tokens\.base\[0\] must be"),
    ([dict(CHAIN, block_time_s=0)], {}, r"^chains\[0\]\.block_time_s must be > 0"),
    ([CHAIN, dict(CHAIN, name="op", chain_id=10, executor="0x12")], {}, r"^chains\[1\]\.executor must be a 0x-prefixed"),
    ([{"name": "base"}], {}, r"missing required config key 'chains\[0\]\.chain_id'"),
    ([CHAIN], {"dexes": [DEX]}, r"^dexes: with \[\[chains\]\] tables, each chain carries its own"),
])
def test_bad_chains_are_named_by_table(chains, extra, message):
    with pytest.raises(ConfigError, match=message):
        from_dict({"chains": chains, **extra})


def test_each_chain_has_its_executor_and_journal_the_first_defaulting_to_the_submitters():
    ours, theirs = "0x" + "aa" * 20, "0x" + "bb" * 20
    config = from_dict({"chains": [CHAIN, dict(CHAIN, name="op", chain_id=10, executor=theirs)],
                        "submitter": {"executor": ours, "journal": "runs/journal.sqlite"}})
    assert [c.executor for c in config.networks()] == [ours, theirs]
    assert [config.submitter.journal_of(c.name, i == 0) for i, c in enumerate(config.networks())] == [
        "runs/journal.sqlite", "runs/journal-op.sqlite"]
    assert from_dict({"submitter": {"executor": ours}}).networks()[0].executor == ours  # one [chain]


def test_custom_eip1559_numbers_are_accepted():
    (chain,) = from_dict({"chains": [dict(CHAIN, eip1559_elasticity=6, eip1559_denominator=50)]}).networks()
    assert (chain.eip1559_elasticity, chain.eip1559_denominator) == (6, 50)


def test_summary_is_one_line_naming_each_chain_its_fee_rules_and_where_its_pools_come_from():
    v3 = {"name": "v3", "kind": "uniswap-v3", "factory": "0x" + "22" * 20, "from_block": 165}
    config = from_dict({"chains": [dict(CHAIN, dexes=[DEX, v3], tokens={"base": ["0x" + "33" * 20], "max_pools": 50},
                                        rpc_url_env="BASE_RPC_URL", eip1559="base", l1_fee="op-stack"),
                                   dict(CHAIN, name="arb", chain_id=42161, l1_fee="arbitrum")]})
    line = cfg.summary(config)
    assert "\n" not in line and line.startswith("2 chains: base (chain 8453, node $BASE_RPC_URL, base fee base, "
                                                "L1 fee op-stack): 2 dexes (uni: pair list of 0x1111…1111; "
                                                "v3: PoolCreated of 0x2222…2222 from block 165, at most 50 per factory), "
                                                "1 base tokens | arb (chain 42161, node http://127.0.0.1:8545, ")
    assert line.endswith("L1 fee arbitrum): 0 dexes (no dexes), 0 base tokens")
    assert cfg.summary(from_dict({})).startswith("1 chain: main (chain 31337,")
