"""A local anvil chain, started from node_modules on a free loopback port and stopped by PID.

anvil comes from the npm registry (`@foundry-rs/anvil`), installed by `deploy/setup.sh`.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import psutil

from scanner.chain.artifacts import REPO_ROOT
from scanner.config import LOCAL_CHAIN_ID
from scanner.errors import ChainError, SetupError

ANVIL_MNEMONIC = "test test test test test test test test test test test junk"  # anvil's public dev accounts


def anvil_binary() -> Path:
    """The anvil executable shipped inside the npm package."""
    env = os.environ.get("ARBSCAN_ANVIL")
    candidates = [Path(env)] if env else []
    candidates += [
        REPO_ROOT / "node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil",
        REPO_ROOT / "node_modules/.bin/anvil",
    ]
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise SetupError(
        f"anvil not found in {REPO_ROOT / 'node_modules'}: run `bash deploy/setup.sh` to install it"
    )


def searcher_key_file(out_dir: Path, index: int = 1) -> Path:
    """Anvil's dev account `index` (the market's searcher) as a 0600 key file for the submitter.

    The key never passes through a log or a Ray argument: actors get the file's path.
    """
    from eth_account import Account

    Account.enable_unaudited_hdwallet_features()
    account = Account.from_mnemonic(ANVIL_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}")
    path = Path(out_dir) / "searcher.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(account.key.to_0x_hex())
    return path


PORT_TRIES = 5


class PortTaken(Exception):
    """Another process bound the port between our pick and anvil's bind."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on `host` (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on `port` now (connections in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def rpc(url: str, method: str, params: list | None = None, timeout: float = 5.0):
    """One raw JSON-RPC call; for anvil's own methods that web3 does not wrap."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}).encode()
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        reply = json.loads(resp.read())
    if "error" in reply:
        raise ChainError(f"{method} failed on {url}: {reply['error'].get('message', reply['error'])}")
    return reply["result"]


@dataclass
class Anvil:
    """A running anvil process that this program started (and alone may stop)."""

    process: subprocess.Popen
    host: str
    port: int
    log_path: Path
    state_path: Path | None = None
    _log_file: IO[bytes] | None = field(default=None, repr=False)
    # Where anvil spills old states once it holds many in memory: ours alone, removed on stop.
    # Left at anvil's default (~/.foundry/anvil/tmp) they outlive the process and filled the disk.
    cache_dir: Path | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    @classmethod
    def start(
        cls,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        block_time: float | None = None,
        automine: bool = True,
        accounts: int = 40,
        balance_eth: int = 1_000_000,
        gas_limit: int = 30_000_000,
        base_fee: int = 1_000_000_000,
        chain_id: int = LOCAL_CHAIN_ID,
        state_path: Path | None = None,
        optimism: bool = False,
        states_kept: int | None = None,
        timeout: float = 20.0,
    ) -> Anvil:
        """Start anvil and wait until it answers `eth_chainId`.

        `block_time` mines on a clock (the demo); `automine=False` mines only on
        `evm_mine` (deterministic tests); neither mines one block per transaction.
        `optimism` runs OP-stack rules: EIP-1559 with elasticity 6 and denominator 250, and each
        transaction charged the L1 data fee read from the L1Block predeploy (`chain.opstack`).
        `states_kept` bounds the past states anvil keeps (in memory, none on disk; older ones are refused by
        name). Left unset, anvil keeps 500 in memory and writes a full state dump per block beyond that to
        its cache dir: fine for small markets, but a 10,000-pool market's deployment (a block per
        transaction) wrote 78 GB there and filled the disk.
        """
        binary = anvil_binary()
        if port is not None and not port_is_free(port, host):
            raise ChainError(f"port {port} on {host} is already in use: pick another with --port or leave it unset")
        args = [
            "--accounts", str(accounts), "--balance", str(balance_eth),
            "--gas-limit", str(gas_limit), "--base-fee", str(base_fee),
            "--chain-id", str(chain_id), "--silent",
        ]
        if block_time is not None:
            args += ["--block-time", str(block_time)]
        elif not automine:
            args += ["--no-mining"]
        if state_path is not None:
            args += ["--state", str(state_path)]
        if optimism:
            args += ["--optimism"]
        if states_kept is not None:
            args += ["--prune-history", str(states_kept)]
        # anvil cannot report a port it picked without printing its dev keys, so a free port is
        # picked here; another process may take it first, and then anvil starts again on a new one.
        for _ in range(PORT_TRIES if port is None else 1):
            chosen = port if port is not None else free_port(host)
            cache_dir = Path(tempfile.mkdtemp(prefix="anvil-cache-"))
            log_path = Path(tempfile.mkstemp(prefix="anvil-", suffix=".log")[1])
            log_file = open(log_path, "wb")
            cmd = [str(binary), "--host", host, "--port", str(chosen), *args, "--cache-path", str(cache_dir)]
            proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
            node = cls(proc, host, chosen, log_path, state_path, log_file, cache_dir)
            try:
                node._wait_ready(timeout)
                return node
            except PortTaken:
                node.stop()
        raise ChainError(f"anvil found no free port on {host} in {PORT_TRIES} tries: "
                         "free some ports or pass --port")

    def _wait_ready(self, timeout: float) -> None:
        """Until our anvil answers on its port; `PortTaken` when another process had the port."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-500:]
                if "in use" in tail:
                    raise PortTaken(self.port)
                raise ChainError(f"anvil exited with code {self.process.returncode} on port {self.port}: {tail}")
            if self._listening():
                try:
                    rpc(self.url, "eth_chainId", timeout=1.0)
                    return
                except (OSError, ChainError):
                    pass
            time.sleep(0.05)
        self.stop()
        raise ChainError(f"anvil did not answer on {self.url} within {timeout:.0f} s")

    def _listening(self) -> bool:
        """Whether the port is held by our process (not by another node that answers there)."""
        try:
            conns = psutil.Process(self.process.pid).net_connections(kind="tcp")
        except psutil.Error:
            return False
        return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == self.port for c in conns)

    def call(self, method: str, *params):
        return rpc(self.url, method, list(params))

    def mine(self, blocks: int = 1) -> None:
        self.call("anvil_mine", hex(blocks))

    def set_automine(self, on: bool) -> None:
        self.call("evm_setAutomine", on)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop this anvil (SIGTERM, then SIGKILL) — only the process we started."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        self.log_path.unlink(missing_ok=True)
        if self.cache_dir is not None:
            shutil.rmtree(self.cache_dir, ignore_errors=True)

    def __enter__(self) -> Anvil:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
