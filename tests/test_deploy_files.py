"""The deployment files parse and carry what their tools require (schema-style checks, no cloud).

- `deploy/cluster.yaml` against the Ray cluster launcher's own JSON schema, plus what arbscan needs.
- `deploy/kuberay/*.yaml`: the fields KubeRay's RayCluster / RayJob (ray.io/v1) and Kubernetes require.
- `deploy/Dockerfile`: one set-up path (deploy/setup.sh), a CPU default and a CUDA build argument.
- `deploy/prometheus.yml` and `deploy/grafana/arbscan.json`: every arbscan metric, by its exported name.
- `deploy/*.toml`: `arbscan config check` passes each (no network); the L2 files' factories and init
  code hashes derive the recorded pools of their chain, and name WETH and native USDC.
"""
from __future__ import annotations

import json
import re
import shlex
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml

from actors.cli import build_parser, main
from scanner.chain.artifacts import pair_address, v3_pool_address
from scanner.config import load

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"


def _yaml(path: Path):
    return yaml.safe_load(path.read_text())


def _metric_names() -> set[str]:
    """The metrics actors/loop.py creates (README "Metrics" lists the same)."""
    text = (REPO / "actors" / "loop.py").read_text()
    names = set(re.findall(r'metrics\.(?:Gauge|Counter|Histogram)\(\s*"(arbscan_\w+)"', text))
    assert len(names) >= 15, names
    return names


def _histograms() -> set[str]:
    text = (REPO / "actors" / "loop.py").read_text()
    return set(re.findall(r'metrics\.Histogram\(\s*"(arbscan_\w+)"', text))


# ---------------------------------------------------------------------------------------------
# Ray cluster launcher

@pytest.fixture(scope="module")
def cluster_yaml() -> dict:
    return _yaml(DEPLOY / "cluster.yaml")


def test_cluster_yaml_matches_the_ray_cluster_launcher_schema(cluster_yaml):
    schema_path = Path(ray.__file__).parent / "autoscaler" / "ray-schema.json"
    jsonschema.validate(cluster_yaml, json.loads(schema_path.read_text()))
    assert cluster_yaml["provider"]["type"] and cluster_yaml["auth"]["ssh_user"]
    types = cluster_yaml["available_node_types"]
    assert cluster_yaml["head_node_type"] in types
    workers = {name: t for name, t in types.items() if name != cluster_yaml["head_node_type"]}
    for name, t in workers.items():
        assert 0 <= t["min_workers"] <= t["max_workers"], name
    assert sum(t["min_workers"] for t in workers.values()) <= cluster_yaml["max_workers"]
    assert sum(t["max_workers"] for t in workers.values()) >= cluster_yaml["max_workers"]


def test_cluster_yaml_has_cpu_workers_and_a_gpu_worker_type(cluster_yaml):
    types = cluster_yaml["available_node_types"]
    gpu = [n for n, t in types.items() if t["resources"].get("GPU", 0) >= 1]
    cpu = [n for n, t in types.items() if n != cluster_yaml["head_node_type"] and not t["resources"].get("GPU")]
    assert gpu and cpu, types
    for name in gpu:  # the GPU type runs the CUDA image; the rest the CPU one
        assert types[name]["docker"]["worker_image"].endswith(":cuda")
    assert cluster_yaml["docker"]["image"].endswith(":cpu")


def test_cluster_yaml_sets_up_with_the_one_setup_script_and_keeps_token_auth(cluster_yaml):
    setup = cluster_yaml["setup_commands"]
    assert any("bash deploy/setup.sh" in c for c in setup), setup
    every = [c for key in ("setup_commands", "head_setup_commands", "worker_setup_commands",
                           "initialization_commands") for c in cluster_yaml.get(key, [])]
    for t in cluster_yaml["available_node_types"].values():
        every += t.get("worker_setup_commands", []) + t.get("initialization_commands", [])
    # No second copy of the set-up steps: what setup.sh does is not done here again.
    assert not [c for c in every if re.search(r"\bpip\b|\bnpm\b|python3? -m venv", c)], every
    assert (DEPLOY / "setup.sh").is_file()
    head = " ".join(cluster_yaml["head_start_ray_commands"])
    assert "--head" in head and "--dashboard-host=127.0.0.1" in head
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in head
    assert "$RAY_HEAD_IP:6379" in " ".join(cluster_yaml["worker_start_ray_commands"])
    assert any("RAY_AUTH_MODE=token" in o for o in cluster_yaml["docker"]["run_options"])
    assert cluster_yaml["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    assert cluster_yaml["file_mounts"]["/app"] == "."
    assert {".venv", "node_modules"} <= set(cluster_yaml["rsync_exclude"])


def test_cluster_example_config_is_a_valid_multi_node_config():
    config = load(DEPLOY / "cluster.example.toml")
    assert config.sockets.data_host == "node"
    assert config.ray.address == "auto" and config.ray.aggregator_node == "head"
    assert config.chain.rpc_url_env == "ARBSCAN_RPC_URL"


# ---------------------------------------------------------------------------------------------
# Container image

def test_dockerfile_builds_cpu_by_default_and_cuda_by_build_argument_with_setup_sh():
    text = (DEPLOY / "Dockerfile").read_text()
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert "ARG VARIANT=cpu" in lines
    assert re.search(r"^FROM \S+ AS base-cpu$", text, re.M) and re.search(r"^FROM \S+ AS base-cuda$", text, re.M)
    assert re.search(r"^FROM base-\$\{VARIANT\}", text, re.M)
    assert re.search(r"^ARG CUDA_BASE=nvidia/cuda:\S+$", text, re.M)
    runs = [line for line in lines if line.startswith("RUN")]
    assert any("bash deploy/setup.sh" in r for r in runs), runs
    # One set-up path: no pip or npm installs of its own.
    assert not re.search(r"\bpip3? install\b|\bnpm (ci|install)\b", text)
    assert re.search(r"apt-get install [^\n]*python3 python3-venv nodejs npm", text)
    assert "ENV PATH=/app/.venv/bin:${PATH}" in lines
    assert re.search(r"ARBSCAN_TORCH=\$\{TORCH_CPU\}", text) and re.search(r"ARBSCAN_TORCH=\$\{TORCH_CUDA\}", text)
    assert "ARBSCAN_TORCH" in (DEPLOY / "setup.sh").read_text()  # the knob the image turns exists
    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert {".venv", "node_modules", ".git"} <= set(ignored)


# ---------------------------------------------------------------------------------------------
# KubeRay

def _check_pod_template(template: dict, where: str) -> dict:
    containers = template["spec"]["containers"]
    assert containers, where
    for c in containers:
        assert c["name"] and c["image"], where
        for key in ("requests", "limits"):
            assert c["resources"][key]["cpu"] and c["resources"][key]["memory"], where
    return containers[0]


def _check_cluster_spec(spec: dict) -> None:
    assert spec["rayVersion"].split(".")[:2] == ray.__version__.split(".")[:2]
    assert spec["authOptions"]["mode"] == "token"
    head = spec["headGroupSpec"]
    assert all(isinstance(v, str) for v in head["rayStartParams"].values()), "rayStartParams values are strings"
    head_container = _check_pod_template(head["template"], "head")
    assert head_container["image"].endswith(":cpu")
    ports = {p["name"]: p["containerPort"] for p in head_container["ports"]}
    assert ports["gcs-server"] == 6379 and ports["dashboard"] == 8265
    mounts = {m["name"]: m["mountPath"] for m in head_container["volumeMounts"]}
    volumes = {v["name"]: v for v in head["template"]["spec"]["volumes"]}
    assert mounts["arbscan-config"] == "/etc/arbscan" and volumes["arbscan-config"]["configMap"]["name"] == "arbscan-config"
    env = {e["name"]: e for e in head_container["env"]}
    assert env["ARBSCAN_RPC_URL"]["valueFrom"]["secretKeyRef"]["name"] == "arbscan-secrets"
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert len(groups) == len(spec["workerGroupSpecs"]) >= 2
    gpu_groups = []
    for name, g in groups.items():
        assert 0 <= g["minReplicas"] <= g["replicas"] <= g["maxReplicas"], name
        assert all(isinstance(v, str) for v in g["rayStartParams"].values()), name
        container = _check_pod_template(g["template"], name)
        if "nvidia.com/gpu" in container["resources"]["limits"]:
            assert g["rayStartParams"]["num-gpus"] == "1" and container["image"].endswith(":cuda"), name
            gpu_groups.append(name)
        else:
            assert container["image"].endswith(":cpu"), name
    assert gpu_groups and len(gpu_groups) < len(groups), "one GPU worker group beside the CPU ones"


def test_raycluster_manifest_has_head_cpu_workers_and_a_gpu_group():
    doc = _yaml(DEPLOY / "kuberay" / "raycluster.yaml")
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayCluster" and doc["metadata"]["name"]
    _check_cluster_spec(doc["spec"])


def test_rayjob_manifest_runs_arbscan_run_with_the_mounted_config():
    doc = _yaml(DEPLOY / "kuberay" / "rayjob.yaml")
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayJob" and doc["metadata"]["name"]
    spec = doc["spec"]
    argv = shlex.split(spec["entrypoint"])
    assert argv[:2] == ["arbscan", "run"]
    args = build_parser().parse_args(argv[1:])  # the entrypoint is a valid arbscan command line
    assert args.config == "/etc/arbscan/config.toml"
    assert spec["shutdownAfterJobFinishes"] is True and spec["submissionMode"] in ("K8sJobMode", "HTTPMode", "SidecarMode")
    _check_cluster_spec(spec["rayClusterSpec"])
    # The job's cluster is the long-lived one's.
    assert spec["rayClusterSpec"] == _yaml(DEPLOY / "kuberay" / "raycluster.yaml")["spec"]


def test_config_map_holds_the_cluster_example_config(tmp_path):
    doc = _yaml(DEPLOY / "kuberay" / "arbscan-config.yaml")
    assert doc["apiVersion"] == "v1" and doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "arbscan-config"
    text = doc["data"]["config.toml"]
    assert tomllib.loads(text) == tomllib.loads((DEPLOY / "cluster.example.toml").read_text())
    (tmp_path / "config.toml").write_text(text)
    assert load(tmp_path / "config.toml").sockets.data_host == "node"


# ---------------------------------------------------------------------------------------------
# Prometheus and Grafana

def test_prometheus_scrapes_every_ray_node_through_rays_service_discovery():
    doc = _yaml(DEPLOY / "prometheus.yml")
    assert doc["global"]["scrape_interval"]
    jobs = {j["job_name"]: j for j in doc["scrape_configs"]}
    files = [f for j in jobs.values() for sd in j.get("file_sd_configs", []) for f in sd["files"]]
    assert "/tmp/ray/prom_metrics_service_discovery.json" in files


def test_grafana_dashboard_charts_every_arbscan_metric_by_its_exported_name():
    dash = json.loads((DEPLOY / "grafana" / "arbscan.json").read_text())
    assert dash["title"] and dash["uid"] and dash["panels"]
    exprs = []
    ids = set()
    for panel in dash["panels"]:
        assert panel["title"] and panel["type"] in ("timeseries", "stat", "gauge", "table")
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]) and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert panel["id"] not in ids
        ids.add(panel["id"])
        assert panel["targets"], panel["title"]
        exprs += [t["expr"] for t in panel["targets"]]
    used = set(re.findall(r"\bray_(arbscan_\w+)", " ".join(exprs)))
    used = {re.sub(r"_(bucket|sum|count)$", "", m) for m in used}
    names = _metric_names()
    assert used == names, (names - used, used - names)
    for h in _histograms():  # histograms are charted as quantiles of their buckets
        assert any(f"ray_{h}_bucket" in e and "histogram_quantile" in e for e in exprs), h
    readme = (REPO / "README.md").read_text()
    assert all(f"`{n}`" in readme for n in names)  # the README's Metrics table names them all
    variables = {v["name"] for v in dash["templating"]["list"]}
    assert "datasource" in variables
    for e in exprs:
        assert e.count("(") == e.count(")"), e
        for var in re.findall(r"\$\{?(\w+)", e):
            assert var in variables or var == "__rate_interval", var


def test_deploy_readme_covers_ray_up_kuberay_and_scaling():
    text = (DEPLOY / "README.md").read_text()
    for needle in ("ray up deploy/cluster.yaml", "kubectl apply -f deploy/kuberay/rayjob.yaml",
                   "kubectl apply -f deploy/kuberay/raycluster.yaml", "watchers.shards", "ray.aggregator_node",
                   'sockets.data_host', "ray.inference_resource", "auth_token", "grafana/arbscan.json"):
        assert needle in text, needle
    for path in re.findall(r"`((?:deploy/)?(?:kuberay/|grafana/)?[\w.-]+\.(?:yaml|yml|toml|json|sh))`", text):
        target = REPO / path if path.startswith("deploy/") else DEPLOY / path
        assert target.exists(), path


# ---------------------------------------------------------------------------------------------
# Chain configs: `arbscan config check`, and the L2 files' addresses against real pools

L2_FILES = {"arbitrum": DEPLOY / "arbitrum.toml", "base": DEPLOY / "base.toml", "optimism": DEPLOY / "optimism.toml"}
L2_DATA = REPO.parent / "shared" / "data" / "l2-2024-11-01" / "pools.json"
# One real pool of each (chain, kind) from that pools.json, each chain's with its WETH and native USDC,
# so the check below never runs on nothing: (chain, kind, pool, token0, token1, fee tier)
KNOWN_POOLS = [
    ("arbitrum", "uniswap-v3", "0xc6962004f452be9203591991d15f6b388e09e8d0", "0x82af49447d8a07e3bd95bd0d56f35241523fbab1",
     "0xaf88d065e77c8cc2239327c5edb3a432268e5831", 500),
    ("arbitrum", "uniswap-v2", "0x879ad3b4d85e049d81bfa732db7e00b6d04d676e", "0x82af49447d8a07e3bd95bd0d56f35241523fbab1",
     "0xfb411a4a80bb7a5ec87c7651acdd605fe14c36e4", 3000),
    ("base", "uniswap-v3", "0xb4cb800910b228ed3d0834cf79d697127bbb00e5", "0x4200000000000000000000000000000000000006",
     "0x833589fcd6edb6e08f4c7c32d4f71b54bda02913", 100),
    ("base", "uniswap-v2", "0x88a43bbdf9d098eec7bceda4e2494615dfd9bb9c", "0x4200000000000000000000000000000000000006",
     "0x833589fcd6edb6e08f4c7c32d4f71b54bda02913", 3000),
    ("optimism", "uniswap-v3", "0x1fb3cf6e48f1e7b10213e7b6d87d4c073c7fdb7b", "0x0b2c639c533813f4aa9d7837caf62653d097ff85",
     "0x4200000000000000000000000000000000000006", 500),
]
BRIDGED_USDC = {"0xff970a61a04b1ca14834a43f5de4533ebddb5cc8", "0x7f5c764cbc14f9669b88837ca1490cca17c31607",
                "0xd9aaec86b65d86f6a7b5b1b0c42ffa531710b6ca"}  # USDC.e on Arbitrum and Optimism, USDbC on Base


def _recorded_pools() -> list[tuple[str, str, str, str, str, int]]:
    """KNOWN_POOLS, and every pool of the recorded L2 data where ../shared is here."""
    if not L2_DATA.is_file():
        return KNOWN_POOLS
    kinds = {"v2": "uniswap-v2", "v3": "uniswap-v3"}
    return KNOWN_POOLS + [(p["chain"], kinds[p["version"]], p["address"], p["token0"]["address"], p["token1"]["address"],
                           int(p["feeTier"])) for p in json.loads(L2_DATA.read_text())]


def test_every_deploy_config_passes_config_check_without_a_network(capsys, monkeypatch):
    def refuse(*_args, **_kwargs):
        raise AssertionError("config check opened a connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    files = sorted(DEPLOY.glob("*.toml"))
    assert set(L2_FILES.values()) <= set(files)
    assert main(["config", "check", *map(str, files)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(": ok: ")[0] for line in lines] == list(map(str, files))
    for name, path in L2_FILES.items():
        (line,) = [line for line in lines if line.startswith(str(path))]
        assert f"1 chain: {name} (chain {load(path).chains[0].chain_id}," in line and "2 dexes" in line, line


def test_config_check_names_the_table_of_a_broken_file_and_exits_2(tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text((DEPLOY / "base.toml").read_text().replace('kind = "uniswap-v3"', 'kind = "uniswap-v9"'))
    proc = subprocess.run([str(Path(sys.executable).parent / "arbscan"), "config", "check", str(DEPLOY / "base.toml"),
                           str(broken)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout.startswith(f"{DEPLOY / 'base.toml'}: ok: ")  # the good file is still checked and summarised
    assert proc.stderr.strip() == (f"{broken}: error: chains[0].dexes[1].kind 'uniswap-v9' is not a known DEX kind: "
                                   "use one of uniswap-v2, uniswap-v3")


@pytest.mark.parametrize("name", sorted(L2_FILES))
def test_l2_config_derives_every_recorded_pool_of_its_chain_and_names_native_usdc_and_weth(name):
    """Each factory with its init code hash puts every recorded pool of its chain and kind at the
    create2 address the pool really has; the base tokens are the chain's WETH and native USDC."""
    (chain,) = load(L2_FILES[name]).chains
    dexes = {d.kind: d for d in chain.dexes}
    assert set(dexes) == {"uniswap-v2", "uniswap-v3"} and all(d.init_code_hash for d in chain.dexes)
    checked = 0
    for pool_chain, kind, address, token0, token1, fee in _recorded_pools():
        if pool_chain != name:
            continue
        dex = dexes[kind]
        code_hash = bytes.fromhex(dex.init_code_hash[2:])
        derived = (v3_pool_address(dex.factory, token0, token1, fee, code_hash) if kind == "uniswap-v3"
                   else pair_address(dex.factory, token0, token1, code_hash))
        assert derived.lower() == address.lower(), (name, kind, address)
        checked += 1
    assert checked >= 1
    weth, usdc = (a.lower() for a in chain.tokens.base)
    tokens = {a.lower() for p in _recorded_pools() if p[0] == name for a in p[3:5]}
    assert weth in tokens and usdc in tokens and usdc not in BRIDGED_USDC
    example = {c.name: c for c in load(DEPLOY / "l2.example.toml").chains}[name]
    assert (example.chain_id, example.eip1559, example.l1_fee, example.tokens) == (chain.chain_id, chain.eip1559,
                                                                                   chain.l1_fee, chain.tokens)
    assert {(d.kind, d.factory) for d in example.dexes} <= {(d.kind, d.factory) for d in chain.dexes}
