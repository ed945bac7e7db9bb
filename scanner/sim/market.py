"""A simulated DEX market on the local chain, deterministic from a seed.

Tokens carry a fair price (in the base token) that follows a random walk whose volatility
switches between regimes, published every block by an Aave-style price oracle (as a CEX price is
public on mainnet). Noise traders swap with heavy-tailed sizes and push pools off fair value;
competing arbitrageurs close a pool's gap to the fair price in the next block when that pays for
their gas times a margin, bidding tips above the submitter's (so an opportunity can vanish before
our transaction lands, and whether it will is visible in the gap, fee, depth and gas price); spam
fills blocks at times so the EIP-1559 base fee moves; a Chainlink-style gas feed is updated every
block. The market knows its ground truth (fair prices, cross-pool gaps it opened) for tests to
compare with.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import cast

import numpy as np
from eth_typing import ChecksumAddress
from web3 import HTTPProvider, Web3
from web3.types import RPCEndpoint

from scanner.chain import artifacts
from scanner.chain.discovery import PoolLens
from scanner.chain.rpc import ChainClient
from scanner.dex.v2 import FEE_DENOMINATOR, amount_out

WAD = 10**18
GWEI = 10**9


@dataclass(frozen=True)
class TokenSpec:
    symbol: str
    decimals: int
    fair_price: float  # base-token units per whole token
    volatility: float  # per-block log-price standard deviation in the calm regime


@dataclass(frozen=True)
class DexSpec:
    """`canonical` deploys the official Uniswap V2 build (30 bps); others deploy the fee fork."""

    name: str
    fee_bps: int
    canonical: bool = False


@dataclass(frozen=True)
class PoolSpec:
    token_a: str
    token_b: str
    dex: str
    depth: float  # value of each side, in whole base-token units


@dataclass(frozen=True)
class MarketSpec:
    seed: int = 0
    base: str = "WETH"
    tokens: tuple[TokenSpec, ...] = (
        TokenSpec("WETH", 18, 1.0, 0.0),
        TokenSpec("USDC", 6, 1 / 3000, 0.0015),
        TokenSpec("DAI", 18, 1 / 3000, 0.0015),
        TokenSpec("WBTC", 8, 20.0, 0.0012),
        TokenSpec("LINK", 18, 0.005, 0.0025),
        TokenSpec("UNI", 18, 0.003, 0.0030),
    )
    dexes: tuple[DexSpec, ...] = (
        DexSpec("uniswap-v2", 30, canonical=True),
        DexSpec("sushi-fork", 25),
        DexSpec("lite-fork", 5),
    )
    pools: tuple[PoolSpec, ...] = (
        PoolSpec("WETH", "USDC", "uniswap-v2", 4000),
        PoolSpec("WETH", "USDC", "sushi-fork", 600),
        PoolSpec("WETH", "USDC", "lite-fork", 40),
        PoolSpec("WETH", "DAI", "uniswap-v2", 1500),
        PoolSpec("WETH", "DAI", "sushi-fork", 120),
        PoolSpec("WETH", "WBTC", "uniswap-v2", 2500),
        PoolSpec("WETH", "WBTC", "sushi-fork", 300),
        PoolSpec("WETH", "LINK", "uniswap-v2", 200),
        PoolSpec("WETH", "LINK", "sushi-fork", 25),
        PoolSpec("WETH", "UNI", "uniswap-v2", 150),
        PoolSpec("WETH", "UNI", "lite-fork", 8),
        PoolSpec("USDC", "DAI", "uniswap-v2", 800),
        PoolSpec("USDC", "DAI", "lite-fork", 60),
        PoolSpec("WBTC", "USDC", "uniswap-v2", 700),
        PoolSpec("LINK", "USDC", "sushi-fork", 50),
        PoolSpec("UNI", "DAI", "uniswap-v2", 20),
    )
    noise_trades_per_block: float = 6.0  # Poisson mean in the calm regime
    noise_size_fraction: float = 0.002  # median trade size as a fraction of the pool's depth
    arbitrageurs: int = 8
    spammers: int = 6
    arb_latency_mean_blocks: float = 0.0  # geometric latency before a competitor acts (0: the next block)
    # A competitor closes a pool's gap to the fair price when doing so earns more than its gas cost
    # times a margin drawn per pool and block from this range (costs and inventories differ): deep
    # pools get closed at small gaps, shallow ones only at large gaps, and dear gas spares them all.
    arb_profit_multiple: tuple[float, float] = (1.0, 5.0)
    arb_tip_gwei: tuple[float, float] = (3.0, 10.0)  # competitors' priority tips: above the submitter's 2 gwei
    volatile_regime_prob: float = 0.05  # calm -> volatile per block
    calm_regime_prob: float = 0.2  # volatile -> calm per block
    volatile_multiplier: float = 4.0
    congestion_on_prob: float = 0.1
    congestion_off_prob: float = 0.3
    gas_limit: int = 30_000_000
    initial_base_fee: int = GWEI
    demand_base_fee: int = GWEI

    @classmethod
    def generated(cls, pools: int, seed: int = 0, **overrides) -> MarketSpec:
        """A larger market of `pools` pools (for benchmarks): every token trades against WETH on one to
        three DEXes, the rest are token/token pairs; decimals 6/8/18, depths over three decades."""
        rng = np.random.default_rng(seed)
        n_tokens = max(3, pools // 8)
        tokens = [TokenSpec("WETH", 18, 1.0, 0.0)] + [
            TokenSpec(f"T{i:03d}", int(rng.choice([6, 8, 18])), float(np.exp(rng.normal(-3, 2))),
                      float(rng.uniform(0.001, 0.003)))
            for i in range(n_tokens)
        ]
        dexes = cls.dexes
        specs: list[PoolSpec] = []
        seen: set[tuple[str, str, str]] = set()
        while len(specs) < pools:
            a, b = (("WETH", tokens[int(rng.integers(1, len(tokens)))].symbol) if rng.random() < 0.5 else
                    tuple(t.symbol for t in rng.choice(tokens[1:], size=2, replace=False)))  # type: ignore[arg-type]
            dex = dexes[int(rng.integers(len(dexes)))].name
            key = (min(a, b), max(a, b), dex)
            if key not in seen:
                seen.add(key)
                specs.append(PoolSpec(a, b, dex, float(np.exp(rng.uniform(np.log(5), np.log(5000))))))
        return cls(seed=seed, tokens=tuple(tokens), pools=tuple(specs), **overrides)

    def __post_init__(self) -> None:
        symbols = {t.symbol for t in self.tokens}
        if self.base not in symbols:
            raise ValueError(f"market base token {self.base!r} is not among the tokens {sorted(symbols)}")
        dexes = {d.name for d in self.dexes}
        for p in self.pools:
            if p.token_a not in symbols or p.token_b not in symbols or p.dex not in dexes:
                raise ValueError(f"market pool {p} names an unknown token or dex")


@dataclass(frozen=True)
class DeployedPool:
    address: str
    token0: str  # address
    token1: str
    symbol0: str
    symbol1: str
    dex: str
    fee_bps: int


@dataclass(frozen=True)
class Deployment:
    """Addresses of everything the market deployed; enough to configure the scanner."""

    tokens: dict[str, str]  # symbol -> address
    decimals: dict[str, int]
    factories: dict[str, tuple[str, int]]  # dex name -> (factory, fee_bps)
    pools: tuple[DeployedPool, ...]
    router: str
    executor: str  # owned by the searcher account
    gas_feed: str
    price_oracle: str  # PriceOracle (Aave's read interface) with every token's fair price in WETH
    burner: str
    searcher: str
    base: str  # base token address


@dataclass(frozen=True)
class Gap:
    """A cross-pool price gap on one pair that is profitable after both pools' fees."""

    pool_buy: str  # where the token is cheap (buy it here)
    pool_sell: str
    pair: tuple[str, str]
    gap_bps: float  # price ratio beyond the round-trip fee


@dataclass
class BlockSummary:
    number: int
    base_fee: int
    gas_used: int
    gas_limit: int
    noise_trades: int
    arb_trades: int
    arb_reverted: int
    spam_txs: int
    largest_gap_bps: float
    gaps: list[Gap] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"block {self.number:>6}  base fee {self.base_fee / GWEI:8.3f} gwei  "
            f"gas used {100 * self.gas_used / self.gas_limit:5.1f}%  trades {self.noise_trades:>3}  "
            f"arbs {self.arb_trades:>2} ({self.arb_reverted} reverted)  spam {self.spam_txs:>2}  "
            f"largest gap {self.largest_gap_bps:7.1f} bps  profitable gaps {len(self.gaps)}"
        )


@dataclass
class _PendingArb:
    due_block: int
    pool_index: int
    account: str
    tip: int


class Market:
    """Deploys the market on a chain and advances it one mined block at a time."""

    ROUTER_GAS = 200_000
    ROUTER_GAS_USED = 110_000  # what a router swap actually burns: the competitors' cost estimate
    FEED_GAS = 120_000
    ORACLE_GAS_BASE, ORACLE_GAS_PER_TOKEN = 60_000, 25_000  # a first price costs a fresh slot (22.1k)
    SPAM_TX_GAS = 5_000_000

    def __init__(self, w3: Web3, spec: MarketSpec | None = None) -> None:
        self.w3 = w3
        self.spec = spec or MarketSpec()
        self.rng = np.random.default_rng(self.spec.seed)
        # One transaction per sender per block: anvil orders its pool by tip, and a sender's
        # later nonce with a higher tip than its earlier one is dropped at mining.
        accounts: Sequence[ChecksumAddress] = w3.eth.accounts  # web3 types it as a 1-tuple
        roles = 3 + self.spec.arbitrageurs + self.spec.spammers
        if len(accounts) < roles + 8:
            raise ValueError(f"the market needs at least {roles + 8} unlocked accounts, the node has {len(accounts)}")
        self.deployer = accounts[0]
        self.searcher = accounts[1]
        self.arbers = accounts[2 : 2 + self.spec.arbitrageurs]
        self.spammers = accounts[2 + self.spec.arbitrageurs : roles - 1]
        self.oracle_owner = accounts[roles - 1]  # its own sender: one transaction per sender per block
        self.traders = accounts[roles:]
        symbols = [t.symbol for t in self.spec.tokens]
        self._token_index = {s: i for i, s in enumerate(symbols)}
        self.log_fair = np.log([t.fair_price for t in self.spec.tokens])
        self.volatile = False
        self.congested = False
        self.deployment: Deployment | None = None
        self._pending: list[_PendingArb] = []
        self._reserves: list[tuple[int, int]] = []
        self._nonces: dict[str, int] = {}
        self.last_mined_at = 0.0  # monotonic time the last step's block was mined (latency benchmarks)

    # ----- set-up -------------------------------------------------------------------------
    def deploy(self) -> Deployment:
        """Deploy tokens, DEXes, pools with liquidity, router, executor, gas feed; fund actors.

        Runs with automine on; leaves the chain with automine off and the base fee reset, so
        `step()` decides what goes into each block.
        """
        w3, spec, me = self.w3, self.spec, self.deployer
        self._rpc("evm_setAutomine", True)
        tokens = {t.symbol: artifacts.deploy(w3, "TestToken", t.symbol, t.symbol, t.decimals, sender=me) for t in spec.tokens}
        factories = {}
        for dex in spec.dexes:
            if dex.canonical:
                if dex.fee_bps != 30:
                    raise ValueError(f"dex {dex.name}: the canonical Uniswap V2 pair charges 30 bps, not {dex.fee_bps}")
                factories[dex.name] = artifacts.deploy(w3, "UniswapV2Factory", me, sender=me)
            else:
                factories[dex.name] = artifacts.deploy(w3, "FeeFactory", me, dex.fee_bps, sender=me)
        fees = {d.name: d.fee_bps for d in spec.dexes}
        canonical = {d.name: d.canonical for d in spec.dexes}
        router = artifacts.deploy(w3, "SimRouter", sender=me)
        executor = artifacts.deploy(w3, "ArbExecutor", sender=self.searcher)
        feed = artifacts.deploy(w3, "GasFeed", 0, "Fast Gas / Wei", sender=me)
        burner = artifacts.deploy(w3, "GasBurner", sender=me)
        oracle = artifacts.deploy(w3, "PriceOracle", self.oracle_owner, sender=self.oracle_owner)

        # Pools and inventories go in as one batch of raw sends mined block after block: pair
        # addresses follow from create2, so nothing waits on a receipt (thousands of transactions).
        self._rpc("evm_setAutomine", False)
        batch: list[tuple[str, str, str, int]] = []  # (sender, to, calldata, gas)
        pools = []
        for p in spec.pools:
            a, b = tokens[p.token_a], tokens[p.token_b]
            factory = factories[p.dex]
            init_hash = artifacts.CANONICAL_INIT_CODE_HASH if canonical[p.dex] else artifacts.load_artifact("FeePair").init_code_hash
            pair_addr = artifacts.pair_address(factory.address, a.address, b.address, init_hash)
            pair = artifacts.at(w3, "UniswapV2Pair", pair_addr)
            batch.append((me, factory.address, factory.encode_abi("createPair", [a.address, b.address]), 4_000_000))
            for sym, tok in ((p.token_a, a), (p.token_b, b)):
                batch.append((me, tok.address, tok.encode_abi("mint", [pair_addr, self._units(sym, p.depth)]), 100_000))
            batch.append((me, pair_addr, pair.encode_abi("mint", [me]), 400_000))
            (t0, s0), (t1, s1) = sorted(((a.address, p.token_a), (b.address, p.token_b)), key=lambda t: bytes.fromhex(t[0][2:]))
            pools.append(DeployedPool(pair_addr, t0, t1, s0, s1, p.dex, fees[p.dex]))

        # Inventories: traders and arbitrageurs hold every token and approve the router once.
        big = 10**9
        for acct in (*self.traders, *self.arbers):
            for sym, tok in tokens.items():
                batch.append((me, tok.address, tok.encode_abi("mint", [acct, self._units(sym, big)]), 100_000))
                batch.append((acct, tok.address, tok.encode_abi("approve", [router.address, 2**256 - 1]), 100_000))
        base = tokens[spec.base]
        batch.append((me, base.address, base.encode_abi("mint", [executor.address, self._units(spec.base, 10_000)]), 100_000))
        self._run_batch(batch)

        self.deployment = Deployment(
            tokens={s: t.address for s, t in tokens.items()},
            decimals={t.symbol: t.decimals for t in spec.tokens},
            factories={name: (f.address, fees[name]) for name, f in factories.items()},
            pools=tuple(pools),
            router=router.address,
            executor=executor.address,
            gas_feed=feed.address,
            price_oracle=oracle.address,
            burner=burner.address,
            searcher=self.searcher,
            base=tokens[spec.base].address,
        )
        self._router = router
        self._feed = feed
        self._burner = burner
        self._oracle = oracle
        self._oracle_gas = self.ORACLE_GAS_BASE + self.ORACLE_GAS_PER_TOKEN * len(spec.tokens)
        self._send_prices(spec.initial_base_fee)
        endpoint = cast(str, cast(HTTPProvider, w3.provider).endpoint_uri)  # the market runs on an HTTP node
        self._lens = PoolLens(ChainClient(endpoint))
        self._rpc("anvil_setNextBlockBaseFeePerGas", hex(spec.initial_base_fee))
        self._rpc("evm_mine")
        self._refresh_reserves()
        self._oracle.functions.getAssetsPrices(list(self.deployment.tokens.values())).call()  # reverts if unpriced
        return self.deployment

    # ----- one block ----------------------------------------------------------------------
    def step(self, on_mined: Callable[[int], None] | None = None) -> BlockSummary:
        """Queue this block's transactions (noise, competitor arbs, spam, feed) and mine it.

        `on_mined(number)` runs right after mining, before the market's own bookkeeping, so a
        latency benchmark times the scanner and not the simulator sharing its CPU.
        """
        if self.deployment is None:
            raise RuntimeError("Market.step() before Market.deploy()")
        rng = self.rng
        head = self.w3.eth.get_block("latest")
        number = head["number"] + 1
        base_fee = head["baseFeePerGas"]
        self._advance_regimes()

        noise = self._send_noise_trades(base_fee)
        arb_hashes = self._send_due_arbs(number, base_fee)
        spam = self._send_spam(base_fee)
        answer = base_fee + int(rng.integers(1, 3)) * GWEI
        self._send(self.deployer, self._feed.address, self._feed.encode_abi("update", [answer]), self.FEED_GAS, 0, base_fee)
        self._send_prices(base_fee)

        self._rpc("evm_mine")
        self.last_mined_at = time.monotonic()
        if on_mined is not None:
            on_mined(number)
        block = self.w3.eth.get_block("latest")
        reverted = sum(1 for h in arb_hashes if self.w3.eth.get_transaction_receipt(h)["status"] == 0)
        self._refresh_reserves()
        self._schedule_arbs(block["number"], block["baseFeePerGas"])
        gaps = self.gaps()
        return BlockSummary(
            number=block["number"],
            base_fee=block["baseFeePerGas"],
            gas_used=block["gasUsed"],
            gas_limit=block["gasLimit"],
            noise_trades=noise,
            arb_trades=len(arb_hashes),
            arb_reverted=reverted,
            spam_txs=spam,
            largest_gap_bps=self._largest_gap_bps(),
            gaps=gaps,
        )

    def run(
        self,
        blocks: int,
        *,
        interval_s: float | None = None,
        on_block: Callable[[BlockSummary], None] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> list[BlockSummary]:
        """Mine `blocks` blocks, back to back or one every `interval_s` seconds (the demo's clock)."""
        out = []
        for summary in self._iterate(blocks, interval_s, should_stop):
            out.append(summary)
            if on_block:
                on_block(summary)
        return out

    def _iterate(self, blocks: int, interval_s: float | None, should_stop) -> Iterator[BlockSummary]:
        next_at = time.monotonic()
        for _ in range(blocks):
            if should_stop():
                return
            if interval_s:
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                next_at += interval_s
            yield self.step()

    # ----- ground truth -------------------------------------------------------------------
    def fair_prices(self) -> dict[str, float]:
        return {t.symbol: float(math.exp(lp)) for t, lp in zip(self.spec.tokens, self.log_fair)}

    def pool_price(self, i: int) -> float:
        """Mid price of pool i as whole token1 per whole token0."""
        p = cast(Deployment, self.deployment).pools[i]
        r0, r1 = self._reserves[i]
        d = cast(Deployment, self.deployment).decimals
        return (r1 / 10 ** d[p.symbol1]) / (r0 / 10 ** d[p.symbol0])

    def gaps(self) -> list[Gap]:
        """Same-pair pool pairs whose price ratio beats both fees: the 2-pool arbitrage truth."""
        pools = cast(Deployment, self.deployment).pools
        by_pair: dict[tuple[str, str], list[int]] = {}
        for i, p in enumerate(pools):
            by_pair.setdefault((p.token0, p.token1), []).append(i)
        out = []
        for pair, idx in by_pair.items():
            for x in range(len(idx)):
                for y in range(x + 1, len(idx)):
                    i, j = idx[x], idx[y]
                    pi, pj = self.pool_price(i), self.pool_price(j)
                    # token0 is cheap where its price (token1 per token0) is low: buy there, sell at the other.
                    buy, sell = (i, j) if pi < pj else (j, i)
                    ratio = max(pi, pj) / min(pi, pj)
                    gi = (FEE_DENOMINATOR - pools[i].fee_bps) / FEE_DENOMINATOR
                    gj = (FEE_DENOMINATOR - pools[j].fee_bps) / FEE_DENOMINATOR
                    edge = ratio * gi * gj - 1
                    if edge > 0:
                        out.append(Gap(pools[buy].address, pools[sell].address, pair, edge * 1e4))
        return out

    def reserves(self) -> list[tuple[int, int]]:
        return list(self._reserves)

    # ----- actors -------------------------------------------------------------------------
    def _advance_regimes(self) -> None:
        spec, rng = self.spec, self.rng
        if self.volatile:
            self.volatile = rng.random() >= spec.calm_regime_prob
        else:
            self.volatile = rng.random() < spec.volatile_regime_prob
        if self.congested:
            self.congested = rng.random() >= spec.congestion_off_prob
        else:
            self.congested = rng.random() < spec.congestion_on_prob
        vol = np.array([t.volatility for t in spec.tokens]) * (spec.volatile_multiplier if self.volatile else 1.0)
        self.log_fair += vol * rng.standard_normal(len(vol))

    def _send_noise_trades(self, base_fee: int) -> int:
        spec, rng, pools = self.spec, self.rng, cast(Deployment, self.deployment).pools
        lam = spec.noise_trades_per_block * (2.0 if self.volatile else 1.0)
        n = min(int(rng.poisson(lam)), len(self.traders))
        for trader in rng.choice(len(self.traders), size=n, replace=False):
            i = int(rng.integers(len(pools)))
            zero_for_one = bool(rng.random() < 0.5)
            r_in = self._reserves[i][0 if zero_for_one else 1]
            # Heavy tails: Pareto(1.5) multiples of the median size, capped at 10% of the reserve.
            frac = min(0.1, spec.noise_size_fraction * (1 + rng.pareto(1.5)) / 2)
            size = max(1, int(r_in * frac))
            tip = int(rng.uniform(0.05, 1.5) * GWEI)
            self._swap(self.traders[int(trader)], i, zero_for_one, size, 0, tip, base_fee)
        return n

    def _schedule_arbs(self, mined: int, base_fee: int) -> None:
        """Competitors price every pool against the fair price (the oracle's), and plan to close the
        gaps worth their gas after a random latency: the most profitable first, one per idle competitor."""
        spec, rng = self.spec, self.rng
        planned = {a.pool_index for a in self._pending}
        idle = [a for a in self.arbers if a not in {p.account for p in self._pending}]
        fair = self.fair_prices()
        worth = []
        for i in range(len(cast(Deployment, self.deployment).pools)):
            tip = int(rng.uniform(*spec.arb_tip_gwei) * GWEI)
            hurdle = rng.uniform(*spec.arb_profit_multiple) * self.ROUTER_GAS_USED * (base_fee + tip)
            trade = self._closing_trade(i, fair)
            if i not in planned and trade is not None and trade[3] > hurdle:
                worth.append((trade[3], i, tip))
        for (_, i, tip), account in zip(sorted(worth, reverse=True), rng.permutation(idle)):
            latency = int(rng.geometric(1 / (1 + spec.arb_latency_mean_blocks))) - 1
            self._pending.append(_PendingArb(mined + 1 + latency, i, str(account), tip))

    def _closing_trade(self, i: int, fair: dict[str, float]) -> tuple[bool, int, int, float] | None:
        """(zero_for_one, size, expected out, profit in base wei at fair prices) of the swap that moves
        pool i's mid price onto the fair price; None when it is already there."""
        p = cast(Deployment, self.deployment).pools[i]
        r0, r1 = self._reserves[i]
        gamma = (FEE_DENOMINATOR - p.fee_bps) / FEE_DENOMINATOR
        d = cast(Deployment, self.deployment).decimals
        # Target mid price in raw units of token1 per token0; trade so the pool lands on it.
        target = fair[p.symbol0] / fair[p.symbol1] * 10 ** d[p.symbol1] / 10 ** d[p.symbol0]
        k = r0 * r1
        if r1 / r0 > target:  # token0 too expensive in the pool: sell token0 into it
            zero_for_one, r_in, new_in = True, r0, math.sqrt(k / target)
        else:
            zero_for_one, r_in, new_in = False, r1, math.sqrt(k * target)
        size = int((new_in - r_in) / gamma)
        if size <= 0:
            return None
        expected = amount_out(size, r_in, r1 if zero_for_one else r0, p.fee_bps)
        sym_in, sym_out = (p.symbol0, p.symbol1) if zero_for_one else (p.symbol1, p.symbol0)
        profit = (expected / 10 ** d[sym_out] * fair[sym_out] - size / 10 ** d[sym_in] * fair[sym_in]) * WAD
        return zero_for_one, size, expected, profit

    def _send_due_arbs(self, number: int, base_fee: int) -> list:
        due, busy = [], set()
        for a in sorted(self._pending, key=lambda a: a.due_block):
            if a.due_block <= number and a.account not in busy:
                due.append(a)
                busy.add(a.account)
        self._pending = [a for a in self._pending if a not in due]  # the rest wait a block
        fair = self.fair_prices()
        hashes = []
        for a in due:
            trade = self._closing_trade(a.pool_index, fair)
            if trade is None:
                continue
            zero_for_one, size, expected, _ = trade
            min_out = expected * 995 // 1000  # reverts if someone moved the pool first
            hashes.append(self._swap(a.account, a.pool_index, zero_for_one, size, min_out, a.tip, base_fee))
        return hashes

    def _send_prices(self, base_fee: int) -> None:
        """Publish this block's fair prices (whole token in WETH, 18 decimals) to the price oracle."""
        assets = [cast(Deployment, self.deployment).tokens[t.symbol] for t in self.spec.tokens]
        wad = [max(1, int(math.exp(lp) * WAD)) for lp in self.log_fair]
        data = self._oracle.encode_abi("setAssetPrices", [assets, wad])
        self._send(self.oracle_owner, self._oracle.address, data, self._oracle_gas, int(0.02 * GWEI), base_fee)

    def _send_spam(self, base_fee: int) -> int:
        rng, spec = self.rng, self.spec
        # Demand for blockspace is elastic: cheap gas draws more of it, so the base fee wanders
        # around `demand_base_fee` instead of decaying to zero; congestion episodes push it up.
        fill = rng.uniform(0.2, 0.5) + 0.15 * math.log(spec.demand_base_fee / max(base_fee, 1))
        fill = min(0.95, max(0.0, fill + (0.4 if self.congested else 0.0)))
        room = fill * spec.gas_limit - self._oracle_gas  # the oracle's update must always fit
        n = min(max(0, int(room // self.SPAM_TX_GAS)), len(self.spammers))
        data = self._burner.encode_abi("burn", [self.SPAM_TX_GAS - 100_000])
        for spammer in self.spammers[:n]:
            self._send(spammer, self._burner.address, data, self.SPAM_TX_GAS, int(0.01 * GWEI), base_fee)
        return n

    # ----- plumbing -----------------------------------------------------------------------
    def _run_batch(self, batch: list[tuple[str, str, str, int]]) -> None:
        """Send the calls a block's worth at a time, mining each, and check that none reverted.

        Each chunk fits the block by declared gas (anvil loses what a full block leaves over) and
        the base fee is held at its start value so thousands of set-up calls stay cheap.
        """
        start = int(self._rpc("eth_blockNumber"), 16)
        budget = self.spec.gas_limit * 9 // 10
        chunk_gas = 0
        for sender, to, data, gas in batch:
            if chunk_gas + gas > budget:
                self._mine_setup_block()
                chunk_gas = 0
            self._send(sender, to, data, gas, 0, self.spec.initial_base_fee)
            chunk_gas += gas
        self._mine_setup_block()
        end = int(self._rpc("eth_blockNumber"), 16)
        receipts = [r for n in range(start + 1, end + 1) for r in self._rpc("eth_getBlockReceipts", hex(n))]
        failed = [r["transactionHash"] for r in receipts if int(r["status"], 16) != 1]
        if len(receipts) != len(batch) or failed:
            raise RuntimeError(f"market set-up: {len(receipts)} of {len(batch)} transactions mined, "
                               f"{len(failed)} reverted (first: {failed[:1]})")

    def _mine_setup_block(self) -> None:
        self._rpc("anvil_setNextBlockBaseFeePerGas", hex(self.spec.initial_base_fee))
        self._rpc("evm_mine")

    def _transact(self, fn, sender: str) -> None:
        """A set-up transaction, waited for: anvil may answer before it has mined the block."""
        receipt = self.w3.eth.wait_for_transaction_receipt(fn.transact({"from": sender}), timeout=30, poll_latency=0.002)
        if receipt["status"] != 1:
            raise RuntimeError(f"market set-up transaction {fn.fn_name} from {sender} reverted")

    def _swap(self, sender: str, i: int, zero_for_one: bool, size: int, min_out: int, tip: int, base_fee: int):
        p = cast(Deployment, self.deployment).pools[i]
        data = self._router.encode_abi("swap", [p.address, zero_for_one, p.fee_bps, size, min_out, sender])
        return self._send(sender, self._router.address, data, self.ROUTER_GAS, tip, base_fee)

    def _send(self, sender: str, to: str, data: str, gas: int, tip: int, base_fee: int):
        # Nonces are ours to count: the node would give two transactions of one sender in the
        # same block the same nonce, and the second would replace the first.
        nonce = self._nonces.get(sender)
        if nonce is None:
            nonce = self.w3.eth.get_transaction_count(cast(ChecksumAddress, sender), "pending")
        self._nonces[sender] = nonce + 1
        tx = {
            "from": sender,
            "nonce": hex(nonce),
            "to": to,
            "data": data,
            "gas": hex(gas),
            "maxPriorityFeePerGas": hex(tip),
            "maxFeePerGas": hex(2 * base_fee + tip),
        }
        return self._rpc("eth_sendTransaction", tx)

    def _rpc(self, method: str, *params):
        reply = self.w3.provider.make_request(RPCEndpoint(method), list(params))
        if "error" in reply:
            raise RuntimeError(f"{method} failed: {reply['error']}")
        return reply["result"]

    def _refresh_reserves(self) -> None:
        _, self._reserves = self._lens.reserves_of([p.address for p in cast(Deployment, self.deployment).pools])

    def _largest_gap_bps(self) -> float:
        fair = self.fair_prices()
        worst = 0.0
        for i, p in enumerate(cast(Deployment, self.deployment).pools):
            target = fair[p.symbol0] / fair[p.symbol1]
            worst = max(worst, abs(math.log(self.pool_price(i) / target)) * 1e4)
        return worst

    def _units(self, symbol: str, value_in_base: float) -> int:
        """Raw token units worth `value_in_base` whole base tokens at the fair price."""
        t = self.spec.tokens[self._token_index[symbol]]
        whole = value_in_base / math.exp(self.log_fair[self._token_index[symbol]])
        return int(whole * 10**t.decimals)
