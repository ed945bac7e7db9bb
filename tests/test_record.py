"""Recording the live market: shapes, labels that agree with the chain, outcomes, repeatability."""
from __future__ import annotations

import json

import numpy as np
import pytest
from web3 import HTTPProvider, Web3

from scanner.chain.follow import SWAP_TOPIC
from scanner.model.features import FEATURE_NAMES, N_FEATURES
from scanner.model.lstm import ArbLSTM, Checkpoint
from scanner.rank.risk import Calibration
from scanner.sim.record import STATUS, TOP_N, Recording, record, record_on

pytestmark = pytest.mark.chain
BLOCKS = 30


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """One profit-policy run, kept with its node so the labels can be checked against the chain."""
    from scanner.chain.anvil import Anvil

    with Anvil.start() as node:
        rec = record_on(node, BLOCKS, seed=3, policy="profit")
        w3 = Web3(HTTPProvider(node.url))
        swaps = {}
        for number in rec.blocks + 1:
            block = w3.eth.get_block(int(number), True)
            logs = w3.eth.get_logs({"fromBlock": int(number), "toBlock": int(number), "topics": [SWAP_TOPIC]})
            swaps[int(number)] = (block, logs)
        yield rec, swaps


def test_shapes_and_candidates(recorded):
    rec, _ = recorded
    pools = len(rec.meta["pools"])
    assert rec.features.shape == (BLOCKS, pools, N_FEATURES) and rec.next_move.shape == rec.next_traded.shape == (BLOCKS, pools)
    assert (np.diff(rec.blocks) == 1).all() and np.isfinite(rec.features).all()
    # The recorder's watcher reads the market's price oracle: pools sit off the fair price by a
    # nonzero gap, and the fee column is each pool's own fee.
    gap, fee = (rec.features[..., FEATURE_NAMES.index(n)] for n in ("log_price_gap", "fee"))
    assert (np.abs(gap) > 1e-5).mean() > 0.5 and np.abs(gap).max() < 0.5
    np.testing.assert_array_equal(fee, np.broadcast_to(np.float32(np.asarray(rec.meta["fee_bps"]) / 1e4), fee.shape))
    n = len(rec.cand_t)
    assert n > BLOCKS and np.bincount(rec.cand_t).max() <= TOP_N
    for name in ("cand_pools", "cand_zero_for_one", "cand_fee_bps", "cand_reserve_in"):
        assert getattr(rec, name).shape == (n, 3)
    assert rec.cand_amounts.shape == (n, 4) and set(rec.cand_hops) <= {2, 3}
    assert ((rec.cand_pools >= 0) == (np.arange(3) < rec.cand_hops[:, None])).all()
    assert (rec.cand_gross > 0).all() and (rec.cand_net > 0).all()
    assert rec.cand_success.any() and (~rec.cand_success).any()
    assert (rec.cand_success == (rec.cand_realized_gross >= 1)).all()


def test_pool_labels_agree_with_the_chain(recorded):
    """A pool flagged traded had a Swap log in the next block, ahead of a transaction with our tip;
    an unflagged pool had none there and did not move."""
    rec, swaps = recorded
    address = {a: i for i, a in enumerate(rec.meta["pools"])}
    tip = rec.meta["tip_wei"]
    for t, number in enumerate(rec.blocks + 1):
        block, logs = swaps[int(number)]
        base = block["baseFeePerGas"]
        ahead = {i for i, tx in enumerate(block["transactions"])
                 if min(tx["maxPriorityFeePerGas"], tx["maxFeePerGas"] - base) > tip}
        traded = {address[e["address"].lower()] for e in logs
                  if e["address"].lower() in address and e["transactionIndex"] in ahead}
        assert set(np.flatnonzero(rec.next_traded[t])) == traded, f"block {number}"
        assert (rec.next_move[t][rec.next_traded[t] == 0] == 0).all()
    assert rec.next_traded.any()


def test_sent_outcomes_match_receipts(recorded):
    rec, _ = recorded
    sent = rec.cand_sent > 0
    assert sent.sum() >= BLOCKS // 2 and (rec.cand_rank[sent] == 0).all()
    assert rec.meta["receipt_mismatches"] == 0 and rec.meta["unresolved"] == 0
    landed = rec.cand_sent == STATUS.index("landed")
    assert landed.any() and (rec.cand_sent_profit[landed] == rec.cand_realized_gross[landed]).all()
    assert (rec.cand_success[sent] == landed[sent]).all()
    assert (rec.cand_gas_paid[sent] > 0).all() and (rec.cand_gas_paid[~sent] == 0).all()


def test_record_writes_a_repeatable_file(tmp_path):
    a = record(12, 5, tmp_path / "a.npz", policy="profit", progress=False)
    record(12, 5, tmp_path / "b.rec", policy="profit", progress=False)
    assert json.loads(json.dumps(a))["blocks"] == 12 and a["out"].endswith("a.npz")
    ra, rb = Recording.load(tmp_path / "a.npz"), Recording.load(tmp_path / "b.rec")
    for name in ("features", "next_move", "next_traded", "cand_pools", "cand_amounts", "cand_success", "cand_sent"):
        np.testing.assert_array_equal(getattr(ra, name), getattr(rb, name), err_msg=name)
    with pytest.raises(ValueError, match="policy"):
        record(5, 5, tmp_path / "c.npz", policy="gas")
    (tmp_path / "junk.npz").write_bytes(b"not a recording")
    with pytest.raises(ValueError, match="arbscan record"):
        Recording.load(tmp_path / "junk.npz")


def test_ev_policy_ranks_with_the_lstm(tmp_path):
    """An (untrained) checkpoint drives the ranking through the streaming batcher and LstmRiskModel."""
    path = tmp_path / "m.pt"
    Checkpoint.from_model(ArbLSTM(), {"risk": {"calibration": Calibration().to_dict()}}).save(path)
    out = record(10, 6, tmp_path / "ev.npz", policy="ev", model=path, progress=False)
    assert out["risk_model"] == "lstm m.pt" and out["sent"] > 0
    rec = Recording.load(tmp_path / "ev.npz")
    assert ((rec.cand_p > 0) & (rec.cand_p <= 1)).all()
    assert not np.allclose(rec.cand_p, rec.cand_p[0])  # per-route, not a constant
