"""Cluster planning without Ray: which node each role runs on, from a description of the live nodes.

May import `scanner.config` and `scanner.errors` only; `actors/launcher.py` applies the plan.
"""
