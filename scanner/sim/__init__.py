"""The simulated market on a local anvil (tokens, DEXes, noise traders, competing arbitrageurs, spam),
recording it as training data, training on recordings and evaluating a checkpoint on unseen seeds.

Drives the whole stack without Ray; may import every layer below it.
"""
