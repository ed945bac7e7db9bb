"""Pool kinds: state and exact integer math, one module per kind, no I/O.

`pool` is the interface (exact quotes plus a Möbius bound for the vectorised search); `v2` is
the constant-product pair, `v3` Uniswap V3's concentrated liquidity. Imports nothing of arbscan
but `scanner.errors`; builders elsewhere push state in.
"""
