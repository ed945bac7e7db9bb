"""The architecture as a test: which layer of `scanner/` may import which, read from every module's AST.

Pure layers do no I/O, so they are tested without a chain, a socket or Ray; `scanner/` never
imports Ray or `actors/` (the Ray shells depend on the core, never the reverse).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

SCANNER = Path(__file__).resolve().parents[1] / "scanner"

BASE = {"config", "errors"}  # every package may import these
ALLOWED: dict[str, set[str]] = {
    # pure: state, math, formats
    "dex": set(),
    "route": {"dex"},
    "gas": set(),
    "model": set(),
    "wire": {"model", "dex"},
    "rank": {"dex", "route", "gas", "model", "wire"},
    "cluster": set(),
    # I/O: chain access, servers, submission
    "chain": {"dex", "gas", "model", "wire"},
    "serve": {"model", "wire"},
    "submit": {"dex", "gas", "rank", "wire", "chain"},
    "history": {"dex", "gas", "model", "wire", "chain", "rank"},  # rank: the backtest runs the aggregator core
    # whole-system drivers
    "sim": {"dex", "route", "gas", "model", "wire", "rank", "chain", "serve", "submit", "history"},
    "bench": {"dex", "route", "gas", "model", "wire", "rank", "chain", "serve", "submit", "sim", "history"},
}
PURE = {"dex", "route", "gas", "model", "wire", "rank", "cluster"}
IO_MODULES = {"web3", "zmq", "ray", "subprocess", "sqlite3", "socket", "requests", "urllib", "eth_account"}
NEVER = {"ray", "actors"}


def imports_of(path: Path, root: Path = SCANNER) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a module, relative imports resolved."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = path.relative_to(root.parent).with_suffix("").parts[: -node.level]
                base = ".".join(package + ((node.module,) if node.module else ()))
            else:
                base = node.module or ""
            if base.count(".") or base != "scanner":  # `from scanner.x.y import z`: the module names the layer
                out.append((node.lineno, base))
            else:  # `from scanner import x`: each name is a layer
                out += [(node.lineno, f"{base}.{a.name}") for a in node.names]
    return out


def violations(path: Path, root: Path = SCANNER) -> list[str]:
    """Every import in `path` that the architecture forbids, one line each."""
    rel = path.relative_to(root)
    layer = rel.parts[0] if len(rel.parts) > 1 else rel.stem
    found = []
    for line, name in imports_of(path, root):
        top = name.split(".")[0]
        where = f"scanner/{rel}:{line} imports {name}"
        if top in NEVER:
            found.append(f"{where}: scanner/ never imports {top}")
        elif layer in PURE and top in IO_MODULES:
            found.append(f"{where}: {layer}/ is a pure layer (no I/O)")
        elif top == "scanner" and "." in name:
            target = name.split(".")[1]
            if target in ALLOWED and target != layer and target not in ALLOWED.get(layer, set()):
                found.append(f"{where}: {layer}/ may import {sorted(ALLOWED.get(layer, set()) | BASE)}")
            elif layer in BASE and target not in BASE:
                found.append(f"{where}: {layer} is the base layer")
    return found


def test_every_package_is_in_the_architecture():
    packages = {p.name for p in SCANNER.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages == set(ALLOWED), "add the package to ALLOWED (and docs/ARCHITECTURE.md)"
    top_level = {p.stem for p in SCANNER.glob("*.py")}
    assert top_level <= {"__init__"} | BASE, f"modules belong in a layer: {sorted(top_level - BASE - {'__init__'})}"
    for package in packages:
        assert ast.get_docstring(ast.parse((SCANNER / package / "__init__.py").read_text())), package


def test_no_module_imports_across_the_layers():
    found = [v for path in sorted(SCANNER.rglob("*.py")) for v in violations(path)]
    assert found == [], "\n".join(found)


@pytest.mark.parametrize("source, layer, expected", [
    ("import zmq\n", "dex", "pure layer"),
    ("from scanner.chain.rpc import ChainClient\n", "rank", "rank/ may import"),
    ("import ray\n", "chain", "never imports ray"),
    ("from actors.launcher import launch\n", "sim", "never imports actors"),
    ("from scanner.sim.market import Market\n", "chain", "chain/ may import"),
    ("from ..chain import rpc\n", "route", "route/ may import"),
])
def test_a_forbidden_import_is_caught(tmp_path, source, layer, expected):
    fake = tmp_path / "scanner"
    (fake / layer).mkdir(parents=True)
    (fake / layer / "probe.py").write_text(source)
    found = violations(fake / layer / "probe.py", fake)
    assert len(found) == 1 and expected in found[0], found
