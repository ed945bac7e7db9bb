"""Recorded chain history: capture a block range of a real node into an append-only columnar store,
and read it back in (block, tx index, log index) order for replay and backtests.

I/O layer: reads the chain through `scanner.chain`, writes and reads Parquet files.
"""
