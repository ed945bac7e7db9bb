"""Lint and types are part of the tests: ruff over the tree, mypy over `scanner/` (settings in pyproject.toml)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing():
    proc = _run(str(BIN / "ruff"), "check", "scanner", "actors", "tests")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_mypy_finds_nothing():
    proc = _run(str(BIN / "mypy"), "--cache-dir", str(REPO / ".mypy_cache"))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
