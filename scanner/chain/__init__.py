"""The chain: JSON-RPC with bounded retries, contract artifacts, pool discovery, head and log
following through gaps and reorgs, one watcher shard, the gas market, reference prices, the local anvil.

I/O. May import dex, gas, model, wire (and config, errors); never rank, serve or sim.
"""
