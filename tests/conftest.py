"""Shared fixtures: real anvil chains and a private local Ray, always stopped, also when a test fails."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from web3 import HTTPProvider, Web3

from actors.ray_session import private_token
from scanner.chain.anvil import Anvil

# Every Ray this test run starts or talks to (ray.init, cluster_utils, `ray start`, `ray job submit`)
# uses this token and these session files, never ~/.ray; set before any test module imports ray.
RAY_DIR = Path(tempfile.mkdtemp(prefix="arbscan-test-ray-"))
os.environ.update(private_token(RAY_DIR))
# matplotlib (the evaluations' PNG plots) keeps its font cache and config under ~/.cache and
# ~/.config unless told otherwise: here, in and under this run's temp folder.
os.environ["MPLCONFIGDIR"] = str(RAY_DIR / "matplotlib")


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(RAY_DIR, ignore_errors=True)


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

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=str(RAY_DIR / "ray"))
    yield
    ray.shutdown()
