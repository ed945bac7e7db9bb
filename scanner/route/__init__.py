"""Routing over the token graph: one edge per pool and direction, 2- and 3-hop cycles through a base
token, and how much to send around each (closed form over all cycles, exact integer refinement).

Pure. May import `scanner.dex` (and config, errors).
"""
