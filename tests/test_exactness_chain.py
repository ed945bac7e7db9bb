"""The scanner core against the chain it scans: every ranked opportunity, block after block of the
simulated market, is proven by the deployed executor.

The scanner sees only what the chain says (discovery, then the lens's reserves at each block);
the executor's `eth_call` at that block must return exactly the opportunity's gross profit, to
the wei, and its gas estimate must stay within 5 % of a GasModel calibrated on the first block
that ranked both 2- and 3-hop cycles.
"""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import pytest
from web3 import HTTPProvider, Web3
from web3.exceptions import ContractLogicError

from scanner.chain import artifacts
from scanner.chain.anvil import Anvil
from scanner.chain.discovery import PoolLens, discover
from scanner.chain.rpc import ChainClient
from scanner.config import DexConfig
from scanner.dex.v2 import V2Pool
from scanner.gas.fees import GasModel, next_base_fee
from scanner.rank.aggregate import opportunity_dict
from scanner.rank.ranking import Opportunity, Ranker
from scanner.sim.market import Market, MarketSpec
from scanner.submit.calibrate import calibrate_gas, execute_fn, measure

pytestmark = pytest.mark.chain

SEEDS = (1, 7)
WARMUP_BLOCKS = 20  # until every pair has been swapped: the gas fit covers traded pairs only
BLOCKS = 40  # scanned per seed
TOP_N = 50
MIN_CHECKED = 100
GAS_TOLERANCE = 0.05


@dataclass(frozen=True)
class Check:
    """One ranked opportunity and what the executor said about it at its block."""

    seed: int
    opportunity: Opportunity
    profit: int | str  # returned by eth_call, or the revert
    gas: int
    calibration: bool  # measured at the block the gas model was fitted on

    @property
    def hops(self) -> int:
        return len(self.opportunity.pools)

    def describe(self) -> str:
        o = self.opportunity
        return (f"seed {self.seed} block {o.block} pools {o.pools} zero_for_one {o.zero_for_one} fees {o.fees_bps} "
                f"amount_in {o.amount_in} amounts {o.amounts}: predicted {o.gross_profit}, executor {self.profit}")


@dataclass(frozen=True)
class Run:
    checks: list[Check]
    gas_models: dict[int, GasModel]  # seed -> model fitted on that market
    seconds: float


def _warm_up(market: Market) -> None:
    """Step until every pair's price accumulator is set (a never-swapped pair pays ~34k gas more)."""
    pairs = [artifacts.at(market.w3, "UniswapV2Pair", p.address) for p in market.deployment.pools]
    # A V2 pair accumulates prices only when time has passed since its last update, and anvil
    # stamps blocks with the wall clock: 20 fast blocks can share the second the pools were
    # minted in, leaving a pair that was swapped (only) then cold. Move the clock on first.
    reply = market.w3.provider.make_request("evm_increaseTime", [1])
    assert "error" not in reply, reply
    market.run(WARMUP_BLOCKS)
    cold = [p.address for p in pairs if p.functions.price0CumulativeLast().call() == 0]
    assert not cold, f"pairs never swapped after {WARMUP_BLOCKS} blocks: {cold}"


def _scan_market(node: Anvil, seed: int) -> tuple[list[Check], GasModel]:
    w3 = Web3(HTTPProvider(node.url, request_kwargs={"timeout": 30}))
    market = Market(w3, MarketSpec(seed=seed))
    deployment = market.deploy()
    _warm_up(market)
    client = ChainClient(node.url)
    found = discover(client, [DexConfig(n, f, fee) for n, (f, fee) in deployment.factories.items()], progress=False)
    scanner = Ranker([V2Pool(p.address, p.token0, p.token1, p.reserve0, p.reserve1, p.fee_bps) for p in found],
                      {deployment.base.lower(): Fraction(1)}, gas_price=0, top_n=TOP_N)
    lens = PoolLens(client)
    addresses = [p.address for p in found]
    seen = {p.address: (p.reserve0, p.reserve1) for p in found}
    checks: list[Check] = []
    model: GasModel | None = None
    for _ in range(BLOCKS):
        market.step()
        head = w3.eth.get_block("latest")
        number, reserves = lens.reserves_of(addresses, head["number"])
        assert number == head["number"]
        changed = {a: r for a, r in zip(addresses, reserves) if seen[a] != r}
        seen |= changed
        gas_price = next_base_fee(head["baseFeePerGas"], head["gasUsed"], head["gasLimit"])
        ranked = scanner.apply_updates(changed, number, gas_price=gas_price)
        calibrating = model is None and {len(o.pools) for o in ranked} >= {2, 3}
        if calibrating:
            # as the launcher gets them: dicts from the query API
            model = calibrate_gas(client, deployment.executor, deployment.searcher,
                                  [opportunity_dict(o) for o in ranked], number)
        gases = measure(client, deployment.executor, deployment.searcher, ranked, number)
        for opportunity, (_, gas) in zip(ranked, gases):
            fn = execute_fn(w3, deployment.executor, opportunity)
            try:
                profit: int | str = fn.call({"from": deployment.searcher}, block_identifier=number)
            except ContractLogicError as e:
                profit = artifacts.describe_revert("ArbExecutor", e)
            checks.append(Check(seed, opportunity, profit, gas, calibrating))
    assert model is not None, f"seed {seed}: no block ranked both 2- and 3-hop cycles"
    return checks, model


@pytest.fixture(scope="module")
def run() -> Iterator[Run]:
    start = time.monotonic()
    checks, models = [], {}
    for seed in SEEDS:
        with Anvil.start() as node:
            seed_checks, models[seed] = _scan_market(node, seed)
            checks += seed_checks
    yield Run(checks, models, time.monotonic() - start)


def test_every_ranked_opportunity_pays_exactly_its_gross_profit_on_chain(run: Run) -> None:
    hops = Counter(c.hops for c in run.checks)
    print(f"\n{len(run.checks)} opportunities checked: {hops[2]} 2-hop, {hops[3]} 3-hop, in {run.seconds:.1f} s")
    assert len(run.checks) >= MIN_CHECKED and hops[2] and hops[3], f"too few opportunities to prove much: {hops}"
    wrong = [c.describe() for c in run.checks if c.profit != c.opportunity.gross_profit]
    assert not wrong, f"{len(wrong)} of {len(run.checks)} opportunities are not exact:\n" + "\n".join(wrong[:10])


def test_calibrated_gas_model_prices_every_later_route_within_tolerance(run: Run) -> None:
    errors = [(abs(c.gas - run.gas_models[c.seed].units(c.hops)) / run.gas_models[c.seed].units(c.hops), c)
              for c in run.checks if not c.calibration]
    worst, case = max(errors, key=lambda e: e[0])
    print(f"\ngas models {run.gas_models}; {len(errors)} later estimates, max relative error {worst:.4%}")
    assert len(errors) >= MIN_CHECKED
    assert worst <= GAS_TOLERANCE, (f"estimate {case.gas} vs model {run.gas_models[case.seed].units(case.hops)} "
                                    f"({worst:.2%}) for {case.describe()}")
