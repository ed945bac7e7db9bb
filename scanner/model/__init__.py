"""The LSTM: per-pool features and their normaliser, the stacked 50→30 LSTM with its heads, the
checkpoint format and the shipped checkpoint, and training on arrays.

Pure (torch, numpy). May import config and errors only; recordings are turned into arrays by
`scanner.sim`, served by `scanner.serve`.
"""
