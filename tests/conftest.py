"""Shared fixtures: real anvil chains and a private local Ray, always stopped, also when a test fails."""
from __future__ import annotations

import os

import pytest
from web3 import HTTPProvider, Web3

from scanner.chain.anvil import Anvil


@pytest.fixture
def anvil_factory():
    """Start anvils with any `Anvil.start` options; every one is stopped at teardown."""
    started: list[Anvil] = []

    def start(**kwargs) -> Anvil:
        node = Anvil.start(**kwargs)
        started.append(node)
        return node

    yield start
    for node in started:
        node.stop()


@pytest.fixture
def anvil(anvil_factory) -> Anvil:
    """A fresh anvil with automine on (one block per transaction)."""
    return anvil_factory()


@pytest.fixture
def w3(anvil) -> Web3:
    return Web3(HTTPProvider(anvil.url, request_kwargs={"timeout": 30}))


@pytest.fixture(scope="module")
def local_ray():
    """A private Ray instance per test module (address "local": never another Ray running here)."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
