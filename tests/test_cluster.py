"""arbscan on a real multi-node Ray cluster, all on this machine and all on loopback.

- Placement rules of the launcher, on described nodes (no Ray).
- `--address` that answers nothing: a clear error naming it, in seconds.
- Three Ray nodes (`ray.cluster_utils.Cluster`), one carrying the custom resource that stands in
  for the GPU node: every actor lands where the launcher says (node ids from the state API), the
  pipeline ranks the market's blocks across the nodes, the dashboard's state API (token auth on)
  lists every actor, and each node's metrics port shows the arbscan metrics of its own actors.
- A head started with `ray start --head --block` by the test, `ray job submit -- arbscan run`,
  the ranking answered over ZMQ while the job runs, the job finishing by itself, and the head
  shut down by the PIDs the test started (never `ray stop`).

Ray here runs in its loopback mode (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0: node IP 127.0.0.1) with
a private temp dir, so no other Ray on the machine can attach to these clusters by accident.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
import ray
from web3 import HTTPProvider, Web3

from actors.demo import local_config, searcher_key_file, wait_for_block
from actors.launcher import launch
from actors.ray_session import check_ray_address
from scanner.cluster.placement import INFERENCE_RESOURCE_AMOUNT, Node, plan_placement, plan_shards, resolve_node
from scanner.config import Config, InferenceConfig, RayConfig, SocketsConfig, WatchersConfig, dump, from_dict, load
from scanner.errors import ArbscanError, ConfigError
from scanner.serve.client import QueryClient
from scanner.sim.market import Market, MarketSpec

from live import tagged_processes

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
ROLES = ("aggregator", "gas-oracle", "inference", "submitter")
LOOPBACK_RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


# ---------------------------------------------------------------------------------------------
# Placement rules on described nodes

HEAD = Node("a" * 56, "10.0.0.1", {"CPU": 4.0, "node:__internal_head__": 1.0}, head=True)
CPU1 = Node("b" * 56, "10.0.0.2", {"CPU": 8.0})
CPU2 = Node("c" * 56, "10.0.0.3", {"CPU": 8.0})
GPU = Node("d" * 56, "10.0.0.4", {"CPU": 8.0, "GPU": 1.0})
MARKED = Node("e" * 56, "10.0.0.5", {"CPU": 2.0, "gpu_node": 1.0})


def _config(**sections) -> Config:
    return replace(Config(), **sections)


def test_default_placement_keeps_everything_on_the_head_of_a_one_node_cluster():
    place = plan_placement(_config(), [HEAD], HEAD.id)
    assert place.hub == HEAD and place.inference == HEAD and place.inference_gpus == 0
    assert place.watchers is None  # spread (one node: the same thing)
    assert place.notes == []
    assert place.describe(2, submitters=("",)) == {"aggregator": HEAD.id, "gas-oracle": HEAD.id, "inference": HEAD.id,
                                       "watcher-0": "SPREAD", "watcher-1": "SPREAD", "submitter": HEAD.id}


def test_node_data_host_puts_inference_on_the_gpu_node_and_spreads_watchers():
    config = _config(sockets=SocketsConfig(data_host="node"), inference=InferenceConfig(device="cuda"))
    place = plan_placement(config, [HEAD, CPU1, GPU, CPU2], HEAD.id)
    assert place.hub == HEAD
    assert place.inference == GPU and place.inference_gpus == 1 and place.inference_device == "cuda"
    assert place.watchers is None and place.data_host == "node"
    assert place.notes == []


def test_a_gpu_wins_over_the_stand_in_resource():
    config = _config(sockets=SocketsConfig(data_host="node"), ray=RayConfig(inference_resource="gpu_node"))
    place = plan_placement(config, [HEAD, MARKED, GPU], HEAD.id)
    assert place.inference == GPU and place.inference_gpus == 1 and place.inference_resources == {}


def test_without_gpus_the_inference_resource_marks_the_node():
    config = _config(sockets=SocketsConfig(data_host="node"), ray=RayConfig(inference_resource="gpu_node"))
    place = plan_placement(config, [HEAD, CPU1, MARKED], HEAD.id)
    assert place.inference == MARKED and place.inference_gpus == 0
    assert place.inference_resources == {"gpu_node": INFERENCE_RESOURCE_AMOUNT}


def test_asking_for_a_gpu_the_cluster_lacks_says_what_it_did_instead():
    config = _config(sockets=SocketsConfig(data_host="node"), inference=InferenceConfig(device="cuda"),
                     ray=RayConfig(inference_resource="tpu_node"))
    place = plan_placement(config, [HEAD, CPU1], HEAD.id)
    assert place.inference == HEAD and place.inference_gpus == 0 and place.inference_device == "cpu"
    assert any("no GPU: running inference on CPU" in n for n in place.notes), place.notes
    assert any("ray.inference_resource = 'tpu_node' but no node has it" in n for n in place.notes), place.notes


def test_loopback_data_plane_on_many_nodes_keeps_every_actor_on_the_aggregator_node():
    place = plan_placement(_config(), [HEAD, CPU1, GPU], HEAD.id)
    assert place.hub == HEAD and place.inference == HEAD and place.watchers == HEAD
    assert place.describe(2)["watcher-1"] == HEAD.id
    assert any('is loopback on a 3-node cluster' in n and 'data_host = "node"' in n for n in place.notes)
    assert any("inference runs there and not on 10.0.0.4" in n for n in place.notes), place.notes


def test_the_aggregator_goes_to_the_node_the_user_names():
    nodes = [HEAD, CPU1, CPU2]
    assert resolve_node("head", nodes) == HEAD
    assert resolve_node("10.0.0.3", nodes) == CPU2
    assert resolve_node(CPU1.id, nodes) == CPU1
    with pytest.raises(ConfigError, match=r"ray.aggregator_node = '10.9.9.9' names no live node.*10.0.0.2"):
        resolve_node("10.9.9.9", nodes)
    config = _config(ray=RayConfig(aggregator_node="10.0.0.3"), sockets=SocketsConfig(data_host="node"))
    place = plan_placement(config, nodes, HEAD.id)
    assert place.hub == CPU2 and place.inference == CPU2
    # The query API binds loopback on that node, not where the driver runs: said, not hidden.
    assert any(n.startswith("sockets.query = 'tcp://127.0.0.1:7780' binds loopback on the aggregator's node 10.0.0.3")
               for n in place.notes), place.notes


def test_more_shards_than_pools_runs_one_shard_per_pool_and_says_so():
    assert plan_shards(2, 16) == (2, None)
    shards, note = plan_shards(8, 3)
    assert shards == 3 and note == "watchers.shards is 8 but there are 3 pools: running 3 shards"


def test_new_ray_keys_have_documented_defaults_and_are_checked():
    assert RayConfig().aggregator_node == "head" and RayConfig().inference_resource == ""
    config = from_dict({"ray": {"aggregator_node": "10.0.0.3", "inference_resource": "gpu_node"},
                        "sockets": {"data_host": "node"}})
    assert config.ray.aggregator_node == "10.0.0.3" and config.sockets.data_host == "node"
    with pytest.raises(ConfigError, match="ray.aggregator_node"):
        from_dict({"ray": {"aggregator_node": " "}})
    with pytest.raises(ConfigError, match="ray.inference_resource: expected str"):
        from_dict({"ray": {"inference_resource": 1}})


# ---------------------------------------------------------------------------------------------
# A Ray address that answers nothing

def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def test_an_address_that_answers_nothing_is_an_error_naming_it_in_seconds(tmp_path):
    (port,) = _free_ports(1)
    started = time.monotonic()
    with pytest.raises(ArbscanError, match=rf"no Ray cluster answers at 127.0.0.1:{port}"):
        check_ray_address(f"127.0.0.1:{port}")
    with pytest.raises(ArbscanError, match=rf"no Ray cluster answers at ray://127.0.0.1:{port}"):
        check_ray_address(f"ray://127.0.0.1:{port}")
    assert time.monotonic() - started < 15
    config = tmp_path / "config.toml"
    config.write_text(dump(Config()))
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run([sys.executable, "-m", "actors.cli", "run", "--config", str(config), "--address",
                           f"127.0.0.1:{port}"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"arbscan: error: no Ray cluster answers at 127.0.0.1:{port}" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


# ---------------------------------------------------------------------------------------------
# Shared helpers for the live clusters

def _auth_token() -> str:
    """The test run's own token (tests/conftest.py writes it under a temp dir; never ~/.ray)."""
    return Path(os.environ["RAY_AUTH_TOKEN_PATH"]).read_text().strip()


def _http_json(url: str, token: str | None, timeout_s: float = 10.0):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout_s) as r:
        return json.loads(r.read())


def _state_actors(dashboard: str, token: str) -> list[dict]:
    """Actors in the arbscan namespace from the dashboard's state API (GET /api/v0/actors)."""
    body = _http_json(f"http://{dashboard}/api/v0/actors?limit=1000&detail=true", token)
    return [a for a in body["data"]["result"]["result"] if a.get("ray_namespace") == "arbscan"]


def _wait_alive_actors(dashboard: str, token: str, names: set[str], timeout_s: float) -> dict[str, dict]:
    deadline = time.monotonic() + timeout_s
    alive: dict[str, dict] = {}
    while time.monotonic() < deadline:
        alive = {a["name"]: a for a in _state_actors(dashboard, token) if a["state"] == "ALIVE"}
        if names <= set(alive):
            return alive
        time.sleep(1.0)
    raise AssertionError(f"actors {sorted(names - set(alive))} not ALIVE after {timeout_s} s; alive: {sorted(alive)}")


def _scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            return r.read().decode()
    except (urllib.error.URLError, OSError):
        return ""


def _series(text: str, metric: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(metric)]


def _step_blocks(market: Market, client: QueryClient, blocks: int) -> list:
    out = []
    for _ in range(blocks):
        summary = market.step()
        out.append((summary, wait_for_block(client, summary.number, timeout_s=15.0)))
    return out


# ---------------------------------------------------------------------------------------------
# Three Ray nodes on this machine

@pytest.fixture(scope="module")
def three_nodes():
    """Head (1 CPU), worker A (2 CPUs, will hold the aggregator), worker B (1 CPU + {"gpu_node": 1})."""
    from ray._private import ray_constants
    from ray._raylet import Config as RayConfigCache
    from ray.cluster_utils import Cluster

    assert not ray.is_initialized(), "another test left Ray connected"
    mp = pytest.MonkeyPatch()
    tmp = tempfile.mkdtemp(prefix="arbc", dir="/tmp")  # short: Ray's socket paths live under it
    for key, value in (LOOPBACK_RAY_ENV | {"RAY_TMPDIR": tmp}).items():
        mp.setenv(key, value)
    mp.delenv("RAY_ADDRESS", raising=False)
    mp.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)  # this driver too: node IP 127.0.0.1
    RayConfigCache.initialize("")  # this process reads RAY_AUTH_MODE=token again (as `ray.init()` does)
    cluster = None
    try:
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 1, "node_ip_address": "127.0.0.1", "include_dashboard": True, "dashboard_host": "127.0.0.1",
            "dashboard_port": 0})
        worker_a = cluster.add_node(num_cpus=2, node_ip_address="127.0.0.1")
        worker_b = cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1", resources={"gpu_node": 1})
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        yield {"cluster": cluster, "head": cluster.head_node.node_id, "a": worker_a.node_id, "b": worker_b.node_id}
    finally:
        if ray.is_initialized():
            ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
        mp.undo()
        shutil.rmtree(tmp, ignore_errors=True)


def _local_market(anvil, tmp_path: Path):
    """The seed-5 market deployed on `anvil`, and the `arbscan run` config for it."""
    market = Market(Web3(HTTPProvider(anvil.url)), MarketSpec(seed=5))
    dep = market.deploy()
    return market, dep, local_config(anvil, dep, tmp_path / "journal.sqlite", searcher_key_file(tmp_path))


@pytest.mark.ray
@pytest.mark.chain
def test_three_nodes_actors_land_where_the_launcher_says_and_rank_across_nodes(three_nodes, anvil, tmp_path):
    from ray.util.state import list_actors

    market, dep, base = _local_market(anvil, tmp_path)
    config = replace(base, sockets=replace(base.sockets, data_host="node"), watchers=WatchersConfig(shards=3),
                     ray=replace(base.ray, aggregator_node=three_nodes["a"], inference_resource="gpu_node"))
    head, a, b = three_nodes["head"], three_nodes["a"], three_nodes["b"]
    pipeline = launch(config, symbols={addr: sym for sym, addr in dep.tokens.items()}, progress=False)
    try:
        # What the launcher decided ...
        assert pipeline.placement == {"aggregator": a, "gas-oracle": a, "inference": b, "watcher-0": "SPREAD",
                                      "watcher-1": "SPREAD", "watcher-2": "SPREAD", "submitter": a}
        # ... is where Ray runs them.
        actors = {x.name: x for x in list_actors(filters=[("ray_namespace", "=", "arbscan"), ("state", "=", "ALIVE")],
                                                 limit=100, detail=True)}
        where = {name: x.node_id for name, x in actors.items()}
        assert set(where) == set(pipeline.placement), where
        for name, node in pipeline.placement.items():
            if node != "SPREAD":
                assert where[name] == node, (name, where[name], node)
        watcher_nodes = {where[f"watcher-{i}"] for i in range(3)}
        assert len(watcher_nodes) >= 2 and watcher_nodes <= {head, a, b}, watcher_nodes
        # The stand-in GPU node: the inference actor asked for a share of its marker resource, runs on CPU.
        assert actors["inference"].required_resources.get("gpu_node") == INFERENCE_RESOURCE_AMOUNT
        assert ray.get(pipeline.actors["inference"].stats.remote())["device"] == "cpu"
        # Data-plane sockets bind on each binding actor's node IP (here Ray's loopback node IP).
        assert all(e.startswith("tcp://127.0.0.1:") for e in pipeline.endpoints.values()), pipeline.endpoints
        # The query API binds loopback on node A while this driver is on the head: the launcher says so.
        assert any(n.startswith("sockets.query =") and "not on this driver's node" in n for n in pipeline.notes)

        # End to end across the nodes: every block the market mines is ranked and answerable over ZMQ.
        client = QueryClient(pipeline.endpoints["query"], timeout_s=5.0)
        ranked = _step_blocks(market, client, 6)
        for summary, top in ranked:
            assert top.block == summary.number
        assert sum(len(top.opportunities) for _, top in ranked) > 0
        stats = pipeline.stats()
        assert stats["aggregator"]["predictions"] > 0  # inference (node B) -> aggregator (node A)
        assert stats["inference"]["rows_in"] > 0  # watchers (spread) -> inference (node B)
        assert stats["aggregator"]["blocks_ranked"] >= 6
        assert client.health().status == "ok"

        # Restart policy: the inference process dies; Ray restarts it on node B (hard affinity), it binds
        # the same endpoint again, the watchers reconnect, and predictions reach the aggregator again.
        old_pid = actors["inference"].pid
        os.kill(old_pid, signal.SIGKILL)  # a worker process of the cluster this test started
        deadline = time.monotonic() + 60
        while True:
            state = list_actors(filters=[("name", "=", "inference"), ("ray_namespace", "=", "arbscan")], detail=True)
            back = [x for x in state if x.state == "ALIVE" and x.pid != old_pid]
            if back:
                break
            assert time.monotonic() < deadline, f"inference not back after 60 s: {state}"
            time.sleep(1.0)
        assert back[0].node_id == b and back[0].num_restarts >= 1
        before = ray.get(pipeline.actors["aggregator"].stats.remote())["predictions"]
        deadline = time.monotonic() + 60
        while ray.get(pipeline.actors["aggregator"].stats.remote())["predictions"] <= before:
            assert time.monotonic() < deadline, "no predictions after the inference actor restarted"
            summary = market.step()
            wait_for_block(client, summary.number, timeout_s=10.0)

        # The dashboard's state API, behind Ray's token authentication, lists every actor by name.
        dashboard = three_nodes["cluster"].webui_url
        with pytest.raises(urllib.error.HTTPError) as denied:
            _http_json(f"http://{dashboard}/api/v0/actors?limit=10", None)
        assert denied.value.code == 401
        listed = {x["name"]: x for x in _state_actors(dashboard, _auth_token())}
        assert set(pipeline.placement) <= set(listed)
        assert {listed[n]["node_id"] for n in ("aggregator", "gas-oracle", "submitter")} == {a}

        # Each node's metrics port shows the arbscan metrics of the actors on it.
        ports = {n["NodeID"]: n["MetricsExportPort"] for n in ray.nodes() if n["Alive"]}
        deadline = time.monotonic() + 45
        agg = inf = []
        while time.monotonic() < deadline:
            market.step()  # keep the counters moving
            agg = [s for s in _series(_scrape(ports[a]), "ray_arbscan_blocks_total") if 'role="aggregator"' in s]
            inf = [s for s in _series(_scrape(ports[b]), "ray_arbscan_feature_rows_total") if 'role="inference"' in s]
            if agg and inf:
                break
            time.sleep(1.0)
        assert agg, f"no ray_arbscan_blocks_total{{role=aggregator}} on node A's metrics port {ports[a]}"
        assert inf, f"no ray_arbscan_feature_rows_total{{role=inference}} on node B's metrics port {ports[b]}"
    finally:
        pipeline.stop()


# ---------------------------------------------------------------------------------------------
# `ray start --head` + `ray job submit -- arbscan run`

def _dashboard_answers(head: subprocess.Popen, port: int, token: str, timeout_s: float = 60.0) -> bool:
    """True once the head's dashboard answers; False when the head exited first (a port was taken)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            _http_json(f"http://127.0.0.1:{port}/api/version", token, timeout_s=2)
            return True
        except (urllib.error.URLError, OSError, ValueError):
            if head.poll() is not None:
                return False
            time.sleep(0.5)
    pytest.fail("the Ray head's dashboard did not answer in 60 s")


@pytest.fixture
def ray_head():
    """`ray start --head --block` on loopback with free ports; stopped by its PID (and its tagged children)."""
    tmp = tempfile.mkdtemp(prefix="arbj", dir="/tmp")
    tag = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env |= LOOPBACK_RAY_ENV | {"RAY_TMPDIR": tmp, "ARBSCAN_TEST_TAG": tag, "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}
    log = open(Path(tmp) / "head.log", "w")
    token = _auth_token()
    head = None
    try:
        # `ray start` cannot report ports it picked, so they are picked here: when another process
        # takes one first, the head exits and starts again on fresh ports (bounded).
        for _ in range(3):
            gcs, dash, agent, agent_grpc, metrics, client, rt_env, nm, om = _free_ports(9)
            head = subprocess.Popen(
                [str(VENV_BIN / "ray"), "start", "--head", "--block", f"--port={gcs}", f"--dashboard-port={dash}",
                 "--dashboard-host=127.0.0.1", "--num-cpus=2", f"--temp-dir={tmp}",
                 f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
                 f"--metrics-export-port={metrics}", f"--ray-client-server-port={client}",
                 f"--runtime-env-agent-port={rt_env}", f"--node-manager-port={nm}", f"--object-manager-port={om}",
                 "--disable-usage-stats"],
                cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            if _dashboard_answers(head, dash, token):
                break
            head.wait(timeout=30)
        else:
            pytest.fail("the Ray head did not start on fresh ports in 3 tries: "
                        + (Path(tmp) / "head.log").read_text()[-3000:])
        yield {"dashboard": f"127.0.0.1:{dash}", "gcs": f"127.0.0.1:{gcs}", "metrics_port": metrics, "env": env,
               "token": token, "tag": tag}
    finally:
        if head is not None:
            head.send_signal(signal.SIGTERM)  # `ray start --block` takes its processes down with it
            try:
                head.wait(timeout=30)
            except subprocess.TimeoutExpired:
                head.kill()
                head.wait(timeout=10)
        deadline = time.monotonic() + 15
        while tagged_processes(tag) and time.monotonic() < deadline:
            time.sleep(0.5)
        leftover = tagged_processes(tag)
        for pid in leftover:  # only processes this fixture started carry the tag
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)
        assert leftover == [], f"processes of the test's Ray head outlived it: {leftover}"


@pytest.mark.ray
@pytest.mark.chain
def test_ray_job_submit_runs_arbscan_on_a_head_the_test_started(ray_head, anvil, tmp_path):
    from ray.job_submission import JobStatus, JobSubmissionClient

    market, dep, base = _local_market(anvil, tmp_path)
    # Port "*": the aggregator binds a port the OS picks then (ports chosen earlier can be taken by the
    # Ray processes starting meanwhile); the job prints the bound endpoint and the test reads it there.
    sockets = replace(base.sockets, query="tcp://127.0.0.1:*", publish="tcp://127.0.0.1:*")
    config = replace(base, inference=replace(base.inference, device="cuda"), sockets=sockets)  # no GPU here: noted
    path = tmp_path / "config.toml"
    path.write_text(dump(config))
    assert load(path) == config
    blocks = 6
    sid = f"arbscan-{uuid.uuid4().hex[:8]}"
    dashboard, token = ray_head["dashboard"], ray_head["token"]
    submit = subprocess.run(
        [str(VENV_BIN / "ray"), "job", "submit", "--address", f"http://{dashboard}", "--submission-id", sid,
         "--no-wait", "--", str(VENV_BIN / "arbscan"), "run", "--config", str(path), "--blocks", str(blocks)],
        env=ray_head["env"], capture_output=True, text=True, timeout=60)
    assert submit.returncode == 0, submit.stdout[-2000:] + submit.stderr[-2000:]
    jobs = JobSubmissionClient(f"http://{dashboard}", headers={"Authorization": f"Bearer {token}"})
    try:
        names = set(ROLES) | {"watcher-0", "watcher-1"}
        deadline = time.monotonic() + 90
        while True:  # every actor ALIVE, by name, in the state API
            status = jobs.get_job_status(sid)
            assert status not in (JobStatus.FAILED, JobStatus.STOPPED), jobs.get_job_logs(sid)[-3000:]
            alive = {a["name"] for a in _state_actors(dashboard, token) if a["state"] == "ALIVE"}
            if names <= alive:
                break
            assert time.monotonic() < deadline, f"actors alive after 90 s: {sorted(alive)}\n{jobs.get_job_logs(sid)[-3000:]}"
            time.sleep(1.0)
        deadline = time.monotonic() + 30
        while not (found := re.search(r"query API: (tcp://\S+)", jobs.get_job_logs(sid))):
            assert time.monotonic() < deadline, jobs.get_job_logs(sid)[-3000:]
            time.sleep(0.5)
        client = QueryClient(found.group(1), timeout_s=5.0)
        ranked = _step_blocks(market, client, 3)
        for summary, top in ranked:  # the job's ranking, answered over ZMQ
            assert top.block == summary.number
        deadline = time.monotonic() + 45
        text = ""
        watcher_0 = lambda: [s for s in _series(text, "ray_arbscan_pools_watched") if 'role="watcher-0"' in s]  # noqa: E731
        while time.monotonic() < deadline:  # the metrics export port of the head (each process exports on its own)
            text = _scrape(ray_head["metrics_port"])
            if _series(text, "ray_arbscan_blocks_total") and watcher_0():
                break
            market.step()
            time.sleep(1.0)
        assert _series(text, "ray_arbscan_blocks_total"), "no ray_arbscan_blocks_total on the metrics port"
        assert watcher_0(), "no ray_arbscan_pools_watched of watcher-0 on the metrics port"
        deadline = time.monotonic() + 60
        while jobs.get_job_status(sid) not in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
            assert time.monotonic() < deadline, jobs.get_job_logs(sid)[-3000:]
            market.step()  # the job stops by itself after --blocks ranked blocks
            time.sleep(0.5)
        logs = jobs.get_job_logs(sid)
        assert jobs.get_job_status(sid) == JobStatus.SUCCEEDED, logs[-3000:]
        assert "note: inference.device is 'cuda' but the cluster has no GPU: running inference on CPU" in logs
        assert logs.count("opportunities, best EV") >= blocks
    finally:
        if jobs.get_job_status(sid) in (JobStatus.PENDING, JobStatus.RUNNING):
            jobs.stop_job(sid)
            deadline = time.monotonic() + 30
            while jobs.get_job_status(sid) in (JobStatus.PENDING, JobStatus.RUNNING) and time.monotonic() < deadline:
                time.sleep(0.5)
