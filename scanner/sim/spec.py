"""What a simulated market is made of (tokens, DEXes, pools, the behaviour knobs) and what it
reports: the deployment's addresses and one summary per mined block."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from scanner.chain.v3 import FEE_TIERS

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
class V3PoolSpec:
    """A canonical Uniswap V3 pool: `fee` in hundredths of a bip (500, 3000, 10000); its LPs'
    positions near the price are as deep as a V2 pair holding `depth` base tokens on each side."""

    token_a: str
    token_b: str
    fee: int
    depth: float


DEMO_V3_POOLS: tuple[V3PoolSpec, ...] = (
    # Pairs that also trade on V2, some on two or three tiers: V2 vs V3, tier vs tier and mixed
    # 3-hop cycles (WETH/USDC/DAI, WETH/WBTC/USDC, WETH/LINK/USDC, WETH/UNI/DAI) all exist.
    V3PoolSpec("WETH", "USDC", 500, 3000),
    V3PoolSpec("WETH", "USDC", 3000, 1500),
    V3PoolSpec("WETH", "USDC", 10000, 100),
    V3PoolSpec("WETH", "DAI", 500, 800),
    V3PoolSpec("USDC", "DAI", 500, 600),
    V3PoolSpec("WETH", "WBTC", 3000, 1200),
    V3PoolSpec("WBTC", "USDC", 3000, 400),
    V3PoolSpec("WETH", "LINK", 3000, 150),
    V3PoolSpec("LINK", "USDC", 10000, 40),
    V3PoolSpec("UNI", "DAI", 3000, 30),
)


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
    v3_pools: tuple[V3PoolSpec, ...] = ()  # none by default: the V2-only market of the shipped model
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
    v3_trades_per_block: float = 4.0  # Poisson mean of V3 noise swaps in the calm regime
    v3_exact_output_prob: float = 0.3
    v3_lps: int = 2  # LP accounts; each moves one of its positions with this probability per block
    lp_move_prob: float = 0.3
    # Mempool mode (off by default: the default market, the recordings and the shipped model stay as
    # they are). Each block's transactions then wait `mempool_window_s` in the node's pool before it is
    # mined, so a pending-transaction watcher sees them; noise traders pay tips for fast inclusion;
    # competitors also backrun pending V2 noise swaps, and every competitor's tip is a share of the
    # opportunity's profit per gas (a bid curve that depends on its size, recorded in `BlockSummary.bids`).
    mempool: bool = False
    mempool_window_s: float = 0.4
    trader_tip_gwei: tuple[float, float] = (5.0, 20.0)  # mempool mode: noise traders' tips
    backrun_prob: float = 0.5  # chance a competitor sees a pending noise swap in time to backrun it
    bid_share: tuple[float, float] = (0.01, 0.2)  # mempool mode: tip = share × profit / gas, share from here

    @classmethod
    def with_v3(cls, seed: int = 0, **overrides) -> MarketSpec:
        """The default market plus canonical V3 pools on three fee tiers (the demo's market)."""
        return cls(seed=seed, v3_pools=DEMO_V3_POOLS, **overrides)

    def noise_fraction(self, rng: np.random.Generator) -> float:
        """A noise trade's size as a fraction of the pool's reserve of the token sold: Pareto(1.5)
        multiples of the median size (heavy tails), capped at 10%."""
        return min(0.1, self.noise_size_fraction * (1 + rng.pareto(1.5)) / 2)

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
        for v in self.v3_pools:
            if v.token_a not in symbols or v.token_b not in symbols or v.token_a == v.token_b:
                raise ValueError(f"market V3 pool {v} names an unknown token or the same token twice")
            if v.fee not in FEE_TIERS:
                raise ValueError(f"market V3 pool {v}: fee {v.fee} is not a factory tier {sorted(FEE_TIERS)}")
        if self.v3_pools and self.v3_lps < 1:
            raise ValueError(f"a market with V3 pools needs at least one LP, not v3_lps={self.v3_lps}")


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
class DeployedV3Pool:
    address: str
    token0: str  # address
    token1: str
    symbol0: str
    symbol1: str
    fee: int  # hundredths of a bip
    tick_spacing: int

    @property
    def fee_bps(self) -> float:
        return self.fee / 100


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
    v3_factory: str = ""  # the canonical UniswapV3Factory; "" when the market has no V3 pools
    v3_pools: tuple[DeployedV3Pool, ...] = ()

    @property
    def v3_fees(self) -> list[int]:
        """The fee tiers the market's V3 pools use, ascending."""
        return sorted({p.fee for p in self.v3_pools})


@dataclass(frozen=True)
class Gap:
    """A cross-pool price gap on one pair that is profitable after both pools' fees."""

    pool_buy: str  # where the token is cheap (buy it here)
    pool_sell: str
    pair: tuple[str, str]
    gap_bps: float  # price ratio beyond the round-trip fee


@dataclass(frozen=True)
class CompetitorBid:
    """One competitor's bid in mempool mode: what a tip-bidding model learns P(win | tip, size) from.

    `kind` is "backrun" (behind the pending swap `trigger`) or "mined" (a gap of the last mined block);
    `tip` is the priority fee per gas in wei; `profit_wei` the opportunity's size at fair prices;
    `landed` whether its transaction succeeded (False: reverted, someone else was first)."""

    block: int
    kind: str
    pool: str
    account: str
    tip: int
    profit_wei: float
    trigger: str = ""
    landed: bool = False


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
    v3_trades: int = 0  # of the noise trades, those on V3 pools
    lp_moves: int = 0  # V3 positions burned or minted again around the price
    bids: list[CompetitorBid] = field(default_factory=list)  # mempool mode: every competitor's bid, with outcome

    def line(self) -> str:
        return (
            f"block {self.number:>6}  base fee {self.base_fee / GWEI:8.3f} gwei  "
            f"gas used {100 * self.gas_used / self.gas_limit:5.1f}%  trades {self.noise_trades:>3}  "
            f"arbs {self.arb_trades:>2} ({self.arb_reverted} reverted)  spam {self.spam_txs:>2}  "
            f"largest gap {self.largest_gap_bps:7.1f} bps  profitable gaps {len(self.gaps)}"
            + (f"  v3 trades {self.v3_trades:>2}  lp moves {self.lp_moves}" if self.v3_trades or self.lp_moves else "")
        )
