"""Connecting to Ray: a private local instance with its own token, or a cluster that answers; and
the addresses this session's actors bound, kept in Ray's KV so a restarted actor binds them again.

A local Ray keeps Ray's token authentication on (its GCS, raylet and worker ports listen on every
interface) with a token of its own, written under a temp dir of this run: nothing under the
user's `~/.ray` is read, created or changed. The token must be in the environment before `import
ray` in this process, so commands call `use_private_token()` first.
"""
from __future__ import annotations

import atexit
import os
import secrets
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

from scanner.config import Config
from scanner.errors import ArbscanError

NAMESPACE = "arbscan"  # every arbscan actor is named within it: `ray.get_actor(role, namespace=NAMESPACE)`


def private_token(directory: Path) -> dict[str, str]:
    """Write a fresh token file (0600) in `directory`; the environment that makes Ray use it."""
    path = directory / "ray_auth_token"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(path), "RAY_USAGE_STATS_ENABLED": "0"}


def use_private_token() -> Path:
    """Point this process (and its children) at a token of its own, unless one is chosen already.

    Returns the token file. The temp dir that holds it (and the local Ray's session files) is
    removed when the process exits.
    """
    if os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return Path(os.environ["RAY_AUTH_TOKEN_PATH"])
    directory = Path(tempfile.mkdtemp(prefix="arbscan-ray-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    os.environ.update(private_token(directory))
    return directory / "ray_auth_token"


def token_hint() -> str:
    """Where the dashboard's token is, for the line that prints the dashboard's address."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "the token is in $RAY_AUTH_TOKEN"
    return f"the token is in {os.environ.get('RAY_AUTH_TOKEN_PATH') or '~/.ray/auth_token'}"


def attach_ray(address: str | None, config: Config) -> Any:
    """Attach to the Ray cluster at `address` (or RAY_ADDRESS), else start a private local one.

    A local Ray keeps its dashboard on `ray.dashboard_host` (loopback by default), its session
    files next to its private token, and token authentication on.
    """
    address = address or os.environ.get("RAY_ADDRESS")
    if not address:
        use_private_token()
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address:
        check_ray_address(address)  # an address that answers nothing: a clear error now, not minutes of retries
        try:
            return ray.init(address=address, namespace=NAMESPACE, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise ArbscanError(f"no Ray cluster answers at {address!r}: {e}") from None
    # address="local": always a new private instance, never another Ray that happens to run here.
    session_dir = Path(os.environ["RAY_AUTH_TOKEN_PATH"]).parent / "ray"
    return ray.init(address="local", num_cpus=config.ray.num_cpus or max(2, os.cpu_count() or 2), include_dashboard=True,
                    dashboard_host=config.ray.dashboard_host, dashboard_port=0, log_to_driver=False,
                    _temp_dir=str(session_dir))


def check_ray_address(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast, naming `address`, when no Ray cluster answers there (`ray.init` would retry for minutes).

    The address is resolved the way `ray.init` resolves it ("auto", RAY_ADDRESS, the last `ray
    start`'s file, localhost to the node IP), then its GCS port must accept a TCP connection.
    """
    if address == "local" or address.startswith(("http://", "https://")):
        return  # ray.init answers these at once by itself
    target = address[len("ray://"):] if address.startswith("ray://") else address
    if not address.startswith("ray://"):
        try:
            from ray._private import services

            target = services.canonicalize_bootstrap_address(address) or target
        except ConnectionError as e:
            raise ArbscanError(f"no Ray cluster answers at {address!r}: {e}") from None
        except Exception:  # a private Ray helper: if it changed, check the address as given
            pass
    host, sep, port = target.strip().rpartition(":")
    if not sep or not port.isdigit():
        raise ArbscanError(f"Ray address {address!r} is not host:port (or 'auto', ray://host:port)")
    host = host.strip("[]")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as e:
        shown = address if target == address else f"{address} ({target})"
        raise ArbscanError(f"no Ray cluster answers at {shown}: {e.strerror or e}") from None


def bind_address(spec: str, key: str) -> str:
    """Where a binding actor binds: the address it had before a restart, else `spec`.

    `spec` is "tcp://HOST:*" (the OS picks a free port: nothing is picked first and bound later);
    HOST "node" is this node's IP. The bound address is kept in Ray's KV under `key` by
    `remember_address`, so a restarted actor binds the port its peers still connect to.
    """
    import ray
    from ray.experimental import internal_kv

    known = internal_kv._internal_kv_get(key, namespace=NAMESPACE)
    if known:
        return known.decode()
    if "://node:" in spec:
        ip = ray.util.get_node_ip_address()
        spec = spec.replace("://node:", f"://[{ip}]:" if ":" in ip else f"://{ip}:")
    return spec


def remember_address(key: str, address: str) -> str:
    """Keep the address a socket was bound to (see `bind_address`); returns it."""
    from ray.experimental import internal_kv

    internal_kv._internal_kv_put(key, address.encode(), overwrite=True, namespace=NAMESPACE)
    return address

