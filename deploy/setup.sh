#!/usr/bin/env bash
# One idempotent set-up for every way arbscan runs (README, CI, Dockerfile, cluster.yaml):
# a venv in .venv with the CPU torch wheel installed first, arbscan itself (editable, with
# its test extras), and the npm packages (anvil, solc, Uniswap V2/V3 artifacts, the OP-stack
# GasPriceOracle/L1Block build) in node_modules.
# Re-running it only redoes the steps whose inputs changed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
venv="${ARBSCAN_VENV:-$root/.venv}"
py="${PYTHON:-python3}"
torch_pin="${ARBSCAN_TORCH:-torch==2.13.0}"

say() { printf '[setup] %s\n' "$*" >&2; }
fingerprint() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }

command -v "$py" >/dev/null || { say "python3 not found: install Python >= 3.11"; exit 1; }
command -v npm >/dev/null || { say "npm not found: install Node.js >= 18 with npm"; exit 1; }

if [ ! -x "$venv/bin/python" ]; then
  say "creating venv at $venv"
  "$py" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)

# torch first and pinned: an unpinned torch pulled in by a dependency can fetch a multi-GB CUDA build.
if ! "$venv/bin/python" -c "import torch" >/dev/null 2>&1; then
  say "installing $torch_pin (CPU wheel)"
  "${pip[@]}" install "$torch_pin"
fi

stamp="$venv/.arbscan-installed"
want=$(fingerprint pyproject.toml)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing arbscan and its dependencies into $venv"
  "${pip[@]}" install -e ".[test]"
  echo "$want" > "$stamp"
fi

nstamp="node_modules/.arbscan-installed"
nwant=$(fingerprint package.json package-lock.json)
if [ "$(cat "$nstamp" 2>/dev/null)" != "$nwant" ] || [ ! -x node_modules/.bin/anvil ]; then
  say "installing npm packages (anvil, solc, @uniswap/v2-core, @uniswap/v3-core, @eth-optimism/contracts-bedrock)"
  # `npm install --no-save` honours package-lock.json and leaves it untouched; `npm ci` refuses this
  # lock because anvil's optional per-platform packages for other systems are not in it.
  npm install --no-save --no-audit --no-fund --loglevel=error >&2
  echo "$nwant" > "$nstamp"
fi
say "ready: $venv/bin/arbscan"
