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
from dataclasses import replace
from typing import cast

import numpy as np
from eth_typing import ChecksumAddress
from web3 import HTTPProvider, Web3
from web3.types import RPCEndpoint

from scanner.chain import artifacts
from scanner.chain.discovery import PoolLens
from scanner.chain.rpc import ChainClient
from scanner.dex.v2 import FEE_DENOMINATOR, amount_out
from scanner.sim.competitors import ClosingTrade, Competitors, closing_trade, closing_trade_v3
from scanner.sim.spec import GWEI, WAD, BlockSummary, CompetitorBid, DeployedPool, DeployedV3Pool, Deployment, Gap, MarketSpec
from scanner.sim.v3_market import Batch, V3Market


class Market:
    """Deploys the market on a chain and advances it one mined block at a time."""

    ROUTER_GAS = 200_000
    ROUTER_GAS_USED = 110_000  # what a router swap actually burns: the competitors' cost estimate
    FEED_GAS = 120_000
    ORACLE_GAS_BASE, ORACLE_GAS_PER_TOKEN = 60_000, 25_000  # a first price costs a fresh slot (22.1k)
    SPAM_TX_GAS = 5_000_000

    @classmethod
    def oracle_gas(cls, spec: MarketSpec) -> int:
        """Gas declared for one block's price oracle update: every token's price, in one transaction."""
        return cls.ORACLE_GAS_BASE + cls.ORACLE_GAS_PER_TOKEN * len(spec.tokens)

    def __init__(self, w3: Web3, spec: MarketSpec | None = None) -> None:
        self.w3 = w3
        self.spec = spec or MarketSpec()
        self.rng = np.random.default_rng(self.spec.seed)
        # One transaction per sender per block: anvil orders its pool by tip, and a sender's
        # later nonce with a higher tip than its earlier one is dropped at mining.
        accounts: Sequence[ChecksumAddress] = w3.eth.accounts  # web3 types it as a 1-tuple
        roles = 3 + self.spec.arbitrageurs + self.spec.spammers
        lps = self.spec.v3_lps if self.spec.v3_pools else 0
        if len(accounts) < roles + lps + 8:
            raise ValueError(f"the market needs at least {roles + lps + 8} unlocked accounts, the node has {len(accounts)}")
        self.deployer = accounts[0]
        self.searcher = accounts[1]
        self.arbers = accounts[2 : 2 + self.spec.arbitrageurs]
        self.spammers = accounts[2 + self.spec.arbitrageurs : roles - 1]
        self.oracle_owner = accounts[roles - 1]  # its own sender: one transaction per sender per block
        self.traders = accounts[roles : len(accounts) - lps]
        self.v3 = V3Market(w3, self.spec, self._send, self._units)
        self.v3_lps = accounts[len(accounts) - lps :]
        symbols = [t.symbol for t in self.spec.tokens]
        self._token_index = {s: i for i, s in enumerate(symbols)}
        self.log_fair = np.log([t.fair_price for t in self.spec.tokens])
        self.volatile = False
        self.congested = False
        self.deployment: Deployment | None = None
        self.competitors = Competitors(self.arbers, self.spec, self.rng, self.ROUTER_GAS_USED)
        self._reserves: list[tuple[int, int]] = []
        self._nonces: dict[str, int] = {}
        self.last_mined_at = 0.0  # monotonic time the last step's block was mined (latency benchmarks)
        self._noise_sent: list[tuple[str, int, bool, int, int]] = []  # this block's V2 noise: (hash, pool, z41, size, tip)
        self._bids: list[tuple[str, CompetitorBid]] = []  # mempool mode: this block's competitor bids by tx hash

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
        v3_funding = self.v3.deploy(me, tokens, (*self.traders, *self.arbers), self.v3_lps)

        # Pools and inventories go in as one batch of raw sends mined block after block: pair
        # addresses follow from create2, so nothing waits on a receipt (thousands of transactions).
        self._rpc("evm_setAutomine", False)
        batch: Batch = []  # (sender, to, calldata, gas)
        pools = []
        for p in spec.pools:
            a, b = tokens[p.token_a], tokens[p.token_b]
            factory = factories[p.dex]
            init_hash = artifacts.CANONICAL_INIT_CODE_HASH if canonical[p.dex] else artifacts.load_artifact("FeePair").init_code_hash
            pair_addr = artifacts.pair_address(factory.address, a.address, b.address, init_hash)
            batch.append((me, factory.address, artifacts.calldata("UniswapV2Factory" if canonical[p.dex] else "FeeFactory", "createPair", a.address, b.address), 4_000_000))
            for sym, tok in ((p.token_a, a), (p.token_b, b)):
                batch.append((me, tok.address, artifacts.calldata("TestToken", "mint", pair_addr, self._units(sym, p.depth)), 100_000))
            batch.append((me, pair_addr, artifacts.calldata("UniswapV2Pair", "mint", me), 400_000))
            (t0, s0), (t1, s1) = sorted(((a.address, p.token_a), (b.address, p.token_b)), key=lambda t: bytes.fromhex(t[0][2:]))
            pools.append(DeployedPool(pair_addr, t0, t1, s0, s1, p.dex, fees[p.dex]))

        # Inventories: traders and arbitrageurs hold every token and approve the router once.
        big = 10**9
        for acct in (*self.traders, *self.arbers):
            for sym, tok in tokens.items():
                batch.append((me, tok.address, artifacts.calldata("TestToken", "mint", acct, self._units(sym, big)), 100_000))
                batch.append((acct, tok.address, artifacts.calldata("TestToken", "approve", router.address, 2**256 - 1), 100_000))
        base = tokens[spec.base]
        batch.append((me, base.address, artifacts.calldata("TestToken", "mint", executor.address, self._units(spec.base, 10_000)), 100_000))
        self._run_batch(batch + v3_funding)
        if spec.v3_pools:
            self._run_batch(self.v3.initial_positions())  # the LPs' harnesses hold their tokens by now

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
            v3_factory=self.v3.factory,
            v3_pools=self.v3.pools,
        )
        self._router = router
        self._feed = feed
        self._burner = burner
        self._oracle = oracle
        self._oracle_gas = self.oracle_gas(spec)
        self._send_prices(spec.initial_base_fee)
        endpoint = cast(str, cast(HTTPProvider, w3.provider).endpoint_uri)  # the market runs on an HTTP node
        self._lens = PoolLens(ChainClient(endpoint))
        self._rpc("anvil_setNextBlockBaseFeePerGas", hex(spec.initial_base_fee))
        self._rpc("evm_mine")
        self._refresh_reserves()
        self.v3.start(int(self._rpc("eth_blockNumber"), 16))
        self._oracle.functions.getAssetsPrices(list(self.deployment.tokens.values())).call()  # reverts if unpriced
        return self.deployment

    # ----- one block ----------------------------------------------------------------------
    def step(self, on_mined: Callable[[int], None] | None = None,
             on_pending: Callable[[], None] | None = None) -> BlockSummary:
        """Queue this block's transactions (noise, competitor arbs, spam, feed) and mine it.

        `on_mined(number)` runs right after mining, before the market's own bookkeeping, so a
        latency benchmark times the scanner and not the simulator sharing its CPU. In mempool mode
        `on_pending()` runs while the block's transactions wait in the pool (within the wait, which it
        shortens), so an in-process scanner can backrun them before the competitors do.
        """
        if self.deployment is None:
            raise RuntimeError("Market.step() before Market.deploy()")
        rng = self.rng
        head = self.w3.eth.get_block("latest")
        number = head["number"] + 1
        base_fee = head["baseFeePerGas"]
        self._advance_regimes()

        noise, busy = self._send_noise_trades(base_fee)
        v3_trades, lp_moves = self.v3.send([t for k, t in enumerate(self.traders) if k not in busy], self.volatile, base_fee)
        arb_hashes = self._send_due_arbs(number, base_fee)
        spam = self._send_spam(base_fee)
        answer = base_fee + int(rng.integers(1, 3)) * GWEI
        self._send(self.deployer, self._feed.address, artifacts.calldata("GasFeed", "update", answer), self.FEED_GAS, 0, base_fee)
        self._send_prices(base_fee)
        if self.spec.mempool:  # the block's transactions wait in the pool, then the bots that saw them backrun
            until = time.monotonic() + self.spec.mempool_window_s
            if on_pending is not None:
                on_pending()
            time.sleep(max(0.0, until - time.monotonic()))
            arb_hashes += self._send_backruns(number, base_fee)

        self._rpc("evm_mine")
        self.last_mined_at = time.monotonic()
        if on_mined is not None:
            on_mined(number)
        block = self.w3.eth.get_block("latest")
        # A transaction the block had no room for stays pending: no receipt, neither landed nor reverted.
        receipts = {h: self._rpc("eth_getTransactionReceipt", h) for h in arb_hashes}
        status = {h: int(r["status"], 16) for h, r in receipts.items() if r is not None}
        reverted = sum(1 for s in status.values() if s == 0)
        bids = [replace(bid, landed=status.get(h) == 1) for h, bid in self._bids]
        self._bids = []
        self._refresh_reserves()
        self.v3.follow(block["number"])
        fair = self.fair_prices()
        trades = [self._closing_trade(i, fair) for i in range(len(self._pools()))]
        self.competitors.schedule(block["number"], block["baseFeePerGas"], trades)
        gaps = self.gaps()
        return BlockSummary(
            number=block["number"],
            base_fee=block["baseFeePerGas"],
            gas_used=block["gasUsed"],
            gas_limit=block["gasLimit"],
            noise_trades=noise + v3_trades,
            arb_trades=len(arb_hashes),
            arb_reverted=reverted,
            spam_txs=spam,
            largest_gap_bps=self._largest_gap_bps(),
            gaps=gaps,
            v3_trades=v3_trades,
            lp_moves=lp_moves,
            bids=bids,
        )

    def run(
        self,
        blocks: int,
        *,
        interval_s: float | None = None,
        on_block: Callable[[BlockSummary], None] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        on_pending: Callable[[], None] | None = None,
    ) -> list[BlockSummary]:
        """Mine `blocks` blocks, back to back or one every `interval_s` seconds (the demo's clock);
        `on_pending` as in `step`."""
        out = []
        for summary in self._iterate(blocks, interval_s, should_stop, on_pending):
            out.append(summary)
            if on_block:
                on_block(summary)
        return out

    def _iterate(self, blocks: int, interval_s: float | None, should_stop,
                 on_pending: Callable[[], None] | None = None) -> Iterator[BlockSummary]:
        next_at = time.monotonic()
        for _ in range(blocks):
            if should_stop():
                return
            if interval_s:
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                next_at += interval_s
            yield self.step(on_pending=on_pending)

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
        """Same-pair pool pairs (V2 and V3) whose price ratio beats both fees: the 2-pool arbitrage truth."""
        pools = self._pools()
        prices = self._prices()
        by_pair: dict[tuple[str, str], list[int]] = {}
        for i, p in enumerate(pools):
            by_pair.setdefault((p.token0, p.token1), []).append(i)
        out = []
        for pair, idx in by_pair.items():
            for x in range(len(idx)):
                for y in range(x + 1, len(idx)):
                    i, j = idx[x], idx[y]
                    pi, pj = prices[i], prices[j]
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

    def _pools(self) -> list[DeployedPool | DeployedV3Pool]:
        """The V2 pools, then the V3 ones: competitors' plans index this list."""
        dep = cast(Deployment, self.deployment)
        return [*dep.pools, *dep.v3_pools]

    def _prices(self) -> list[float]:
        """Mid prices (whole token1 per whole token0) in `_pools()` order."""
        decimals = cast(Deployment, self.deployment).decimals
        return [self.pool_price(i) for i in range(len(self._reserves))] + [
            self.v3.price(i, decimals) for i in range(len(self.v3.pools))]

    def _closing_trade(self, i: int, fair: dict[str, float]) -> ClosingTrade | None:
        """The trade that closes pool i's gap (in `_pools()` order) from the last mined state."""
        dep = cast(Deployment, self.deployment)
        n = len(dep.pools)
        if i < n:
            return closing_trade(dep.pools[i], self._reserves[i], fair, dep.decimals)
        return closing_trade_v3(dep.v3_pools[i - n], self.v3.states[i - n], fair, dep.decimals)

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

    def _send_noise_trades(self, base_fee: int) -> tuple[int, set[int]]:
        """V2 noise swaps; returns how many and which traders sent them."""
        spec, rng, pools = self.spec, self.rng, cast(Deployment, self.deployment).pools
        lam = spec.noise_trades_per_block * (2.0 if self.volatile else 1.0)
        n = min(int(rng.poisson(lam)), len(self.traders))
        picked = rng.choice(len(self.traders), size=n, replace=False)
        for trader in picked:
            i = int(rng.integers(len(pools)))
            zero_for_one = bool(rng.random() < 0.5)
            r_in = self._reserves[i][0 if zero_for_one else 1]
            size = max(1, int(r_in * spec.noise_fraction(rng)))
            tip = int(rng.uniform(*(spec.trader_tip_gwei if spec.mempool else (0.05, 1.5))) * GWEI)
            tx_hash = self._swap(self.traders[int(trader)], i, zero_for_one, size, 0, tip, base_fee)
            if spec.mempool:
                self._noise_sent.append((tx_hash, i, zero_for_one, size, tip))
        return n, {int(t) for t in picked}

    def _send_backruns(self, number: int, base_fee: int) -> list:
        """Mempool mode: competitors backrun the block's pending V2 noise swaps, each priced on the
        mined reserves plus that one swap (what a mempool bot simulates); one transaction per sender."""
        dep, fair = cast(Deployment, self.deployment), self.fair_prices()
        busy = {bid.account for _, bid in self._bids}
        hashes = []
        for trigger, i, zero_for_one, size, tip in self._noise_sent:
            r0, r1 = self._reserves[i]
            r_in, r_out = (r0, r1) if zero_for_one else (r1, r0)
            out = amount_out(size, r_in, r_out, dep.pools[i].fee_bps)
            after = (r0 + size, r1 - out) if zero_for_one else (r0 - out, r1 + size)
            trade = closing_trade(dep.pools[i], after, fair, dep.decimals)
            bid = self.competitors.backrun(trade, tip, base_fee, busy)
            if bid is None or trade is None:
                continue
            account, arb_tip = bid
            busy.add(account)
            tx_hash = self._swap(account, i, trade.zero_for_one, trade.size, trade.expected_out * 995 // 1000, arb_tip, base_fee)
            self._bids.append((tx_hash, CompetitorBid(number, "backrun", dep.pools[i].address, account, arb_tip,
                                                      trade.profit_wei, trigger)))
            hashes.append(tx_hash)
        self._noise_sent = []
        return hashes

    def _send_due_arbs(self, number: int, base_fee: int) -> list:
        n, fair = len(cast(Deployment, self.deployment).pools), self.fair_prices()
        hashes = []
        for arb, trade in self.competitors.due(number, lambda i: self._closing_trade(i, fair)):
            if arb.pool_index >= n:  # V3: the price limit stops it at the fair price, or reverts once past it
                hashes.append(self.v3.send_swap(arb.account, arb.pool_index - n, trade.zero_for_one, trade.size,
                                                trade.sqrt_price_limit_x96, arb.tip, base_fee))
            else:
                min_out = trade.expected_out * 995 // 1000  # reverts if someone moved the pool first
                hashes.append(self._swap(arb.account, arb.pool_index, trade.zero_for_one, trade.size, min_out, arb.tip,
                                         base_fee))
            if self.spec.mempool:
                self._bids.append((hashes[-1], CompetitorBid(number, "mined", self._pools()[arb.pool_index].address,
                                                             arb.account, arb.tip, trade.profit_wei)))
        return hashes

    def _send_prices(self, base_fee: int) -> None:
        """Publish this block's fair prices (whole token in WETH, 18 decimals) to the price oracle."""
        assets = [cast(Deployment, self.deployment).tokens[t.symbol] for t in self.spec.tokens]
        wad = [max(1, int(math.exp(lp) * WAD)) for lp in self.log_fair]
        data = artifacts.calldata("PriceOracle", "setAssetPrices", assets, wad)
        self._send(self.oracle_owner, self._oracle.address, data, self._oracle_gas, int(0.02 * GWEI), base_fee)

    def _send_spam(self, base_fee: int) -> int:
        rng, spec = self.rng, self.spec
        # Demand for blockspace is elastic: cheap gas draws more of it, so the base fee wanders
        # around `demand_base_fee` instead of decaying to zero; congestion episodes push it up.
        fill = rng.uniform(0.2, 0.5) + 0.15 * math.log(spec.demand_base_fee / max(base_fee, 1))
        fill = min(0.95, max(0.0, fill + (0.4 if self.congested else 0.0)))
        room = fill * spec.gas_limit - self._oracle_gas  # the oracle's update must always fit
        n = min(max(0, int(room // self.SPAM_TX_GAS)), len(self.spammers))
        data = artifacts.calldata("GasBurner", "burn", self.SPAM_TX_GAS - 100_000)
        for spammer in self.spammers[:n]:
            self._send(spammer, self._burner.address, data, self.SPAM_TX_GAS, int(0.01 * GWEI), base_fee)
        return n

    # ----- plumbing -----------------------------------------------------------------------
    def _run_batch(self, batch: Batch) -> None:
        """Send the calls a block's worth at a time, mining each, and check that none reverted.

        Each chunk fits the block by declared gas (anvil loses what a full block leaves over) and
        the base fee is held at its start value so thousands of set-up calls stay cheap. A chunk
        goes to the node as one JSON-RPC batch: one HTTP round trip per block, not per call.
        """
        start = int(self._rpc("eth_blockNumber"), 16)
        budget = self.spec.gas_limit * 9 // 10
        chunk: list[dict] = []
        chunk_gas = 0
        for sender, to, data, gas in batch:
            if chunk_gas + gas > budget:
                self._send_chunk(chunk)
                chunk, chunk_gas = [], 0
            chunk.append(self._transaction(sender, to, data, gas, 0, self.spec.initial_base_fee))
            chunk_gas += gas
        self._send_chunk(chunk)
        end = int(self._rpc("eth_blockNumber"), 16)
        receipts = [r for n in range(start + 1, end + 1) for r in self._rpc("eth_getBlockReceipts", hex(n))]
        failed = [r["transactionHash"] for r in receipts if int(r["status"], 16) != 1]
        if len(receipts) != len(batch) or failed:
            raise RuntimeError(f"market set-up: {len(receipts)} of {len(batch)} transactions mined, "
                               f"{len(failed)} reverted (first: {failed[:1]})")

    def _send_chunk(self, transactions: list[dict]) -> None:
        """Send one set-up block's transactions in one batch request, then mine them."""
        requests = [(RPCEndpoint("eth_sendTransaction"), [tx]) for tx in transactions]
        replies = cast(HTTPProvider, self.w3.provider).make_batch_request(requests) if requests else []
        if not isinstance(replies, list):  # the whole batch refused: one error object
            raise RuntimeError(f"market set-up: the node refused a batch of {len(transactions)} transactions: {replies}")
        refused = [r["error"] for r in replies if "error" in r]
        if refused:
            raise RuntimeError(f"market set-up: the node refused {len(refused)} of {len(transactions)} transactions "
                               f"(first: {refused[0]})")
        self._rpc("anvil_setNextBlockBaseFeePerGas", hex(self.spec.initial_base_fee))
        self._rpc("evm_mine")

    def _swap(self, sender: str, i: int, zero_for_one: bool, size: int, min_out: int, tip: int, base_fee: int):
        p = cast(Deployment, self.deployment).pools[i]
        data = artifacts.calldata("SimRouter", "swap", p.address, zero_for_one, p.fee_bps, size, min_out, sender)
        return self._send(sender, self._router.address, data, self.ROUTER_GAS, tip, base_fee)

    def _send(self, sender: str, to: str, data: bytes, gas: int, tip: int, base_fee: int):
        return self._rpc("eth_sendTransaction", self._transaction(sender, to, data, gas, tip, base_fee))

    def _transaction(self, sender: str, to: str, data: bytes, gas: int, tip: int, base_fee: int) -> dict:
        """The node-signed transaction `eth_sendTransaction` takes, with the sender's next nonce.

        Nonces are ours to count: the node would give two transactions of one sender in the same
        block the same nonce, and the second would replace the first."""
        nonce = self._nonces.get(sender)
        if nonce is None:
            nonce = self.w3.eth.get_transaction_count(cast(ChecksumAddress, sender), "pending")
        self._nonces[sender] = nonce + 1
        return {
            "from": sender,
            "nonce": hex(nonce),
            "to": to,
            "data": "0x" + data.hex(),
            "gas": hex(gas),
            "maxPriorityFeePerGas": hex(tip),
            "maxFeePerGas": hex(2 * base_fee + tip),
        }

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
        for p, price in zip(self._pools(), self._prices()):
            target = fair[p.symbol0] / fair[p.symbol1]
            worst = max(worst, abs(math.log(price / target)) * 1e4)
        return worst

    def _units(self, symbol: str, value_in_base: float) -> int:
        """Raw token units worth `value_in_base` whole base tokens at the fair price."""
        t = self.spec.tokens[self._token_index[symbol]]
        whole = value_in_base / math.exp(self.log_fair[self._token_index[symbol]])
        return int(whole * 10**t.decimals)
