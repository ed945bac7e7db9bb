"""The deployment files parse and carry what their tools require (schema-style checks, no cloud).

- `deploy/cluster.yaml` against the Ray cluster launcher's own JSON schema, plus what arbscan needs.
- `deploy/kuberay/*.yaml`: the fields KubeRay's RayCluster / RayJob (ray.io/v1) and Kubernetes require.
- `deploy/Dockerfile`: one set-up path (deploy/setup.sh), a CPU default and a CUDA build argument.
- `deploy/prometheus.yml` and `deploy/grafana/arbscan.json`: every arbscan metric, by its exported name.
"""
from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml

from actors.cli import build_parser
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
