"""Ranking: opportunities, expected value, the risk model that turns LSTM outputs into P(success) and
slippage, the per-block aggregation of every shard, reorg rollback, and the table people read.

Pure. May import dex, route, gas, model, wire (and config, errors).
"""
