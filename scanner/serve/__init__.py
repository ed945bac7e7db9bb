"""Servers and clients on ZeroMQ: the query server (ROUTER + PUB), the inference server with its
dynamic and streaming batchers, the query client, and the CURVE key files that guard them.

I/O. May import model and wire (and config, errors).
"""
