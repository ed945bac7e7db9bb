"""Gas rules: the EIP-1559 next base fee, tip percentiles, congestion, and the per-route gas model
that turns a route into a cost in its base token.

Pure: headers and fee history come in as numbers (`scanner.chain.gas` reads them).
"""
