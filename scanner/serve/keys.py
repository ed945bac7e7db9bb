"""CURVE key files for the query and publish sockets, in the format of `zmq.auth`.

A key pair is two files: `NAME.key` (public, safe to share) and `NAME.key_secret` (public + secret,
mode 0600). The server loads its `.key_secret`; it admits the clients whose `.key` files are in its
authorized keys directory; a client loads its own `.key_secret` and the server's `.key`.
Secret keys live only in `KeyPair.secret`, which is left out of repr so it never reaches a log.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import zmq
import zmq.auth

from scanner.errors import ConfigError


@dataclass(frozen=True)
class KeyPair:
    public: bytes
    secret: bytes = field(repr=False)


@dataclass(frozen=True)
class ClientKeys:
    """What a client needs to talk to a CURVE server: its own pair and the server's public key."""

    server_public: bytes
    client: KeyPair


def generate(directory: str | Path, name: str) -> tuple[Path, Path]:
    """Write a new key pair as `directory/name.key` and `directory/name.key_secret`; return both paths."""
    if not zmq.has("curve"):
        raise ConfigError("this libzmq has no CURVE support: install a pyzmq wheel (it bundles libsodium)")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    public, secret = (Path(p) for p in zmq.auth.create_certificates(directory, name))
    os.chmod(secret, 0o600)
    return public, secret


def load_secret(path: str | Path) -> KeyPair:
    """A key pair from a `.key_secret` file."""
    public, secret = _load(path)
    if secret is None:
        raise ConfigError(f"{path} holds only a public key: point to the matching .key_secret file")
    return KeyPair(public, secret)


def load_public(path: str | Path) -> bytes:
    """The public key from a `.key` (or `.key_secret`) file."""
    return _load(path)[0]


def client_keys(client_secret_file: str | Path, server_public_file: str | Path) -> ClientKeys:
    return ClientKeys(load_public(server_public_file), load_secret(client_secret_file))


def authorized_keys(directory: str | Path) -> dict[bytes, bool]:
    """The client public keys in `directory` (every `*.key` file); refuses a missing or empty one."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError(f"authorized keys dir {directory} does not exist: create it and copy each client's .key "
                          "file into it")
    keys = zmq.auth.load_certificates(directory)
    if not keys:
        raise ConfigError(f"authorized keys dir {directory} has no *.key file, so no client could connect: copy "
                          "each client's public .key file into it")
    return keys


def _load(path: str | Path) -> tuple[bytes, bytes | None]:
    try:
        return zmq.auth.load_certificate(path)
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read CURVE key file {path} ({e}): generate one with "
                          "scanner.serve.keys.generate(dir, name)") from None
