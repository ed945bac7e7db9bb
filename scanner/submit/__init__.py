"""Simulated submission: prove the best opportunities with the executor (eth_call, estimateGas), build
the bundle, send only on the local chain, calibrate route gas, and journal every outcome in SQLite.

I/O. May import dex, gas, rank, wire, chain (and config, errors).
"""
