"""Shared fixtures: real anvil chains that are always stopped, also when a test fails."""
from __future__ import annotations

import pytest
from web3 import HTTPProvider, Web3

from scanner.localchain import Anvil


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
