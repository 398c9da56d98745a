"""Screening on multi-node Ray clusters: probe actors spread over worker nodes, and an autoscaling cluster that
adds GPU nodes for queued probe actors and removes them when idle.

Each cluster runs in its own subprocess (this file, run as a script): the session's ``ray_session`` keeps its
local Ray, the autoscaler's environment variables stay out of the test process, and ``RAY_TMPDIR`` gives each
cluster its own session directory and address file, so nothing else on the machine can connect to it by accident.
The subprocess writes what it observed as JSON; the assertions are here.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path

import pytest

from tests._harness.clusters import local_cluster, run_isolated
from tests._harness.ports import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: Each scenario's limit (the per-test timeout is 600 s): its subprocess and cluster are killed after it.
SCENARIO_TIMEOUT_S = 150
#: How long the autoscale scenario waits for the idle worker nodes to go (within the scenario's limit).
SCALE_DOWN_WAIT_S = 90


def _run_scenario(name: str, out_dir: Path) -> dict:
    """Run ``name`` in a fresh Python process with its own Ray temp dir; return the facts it recorded."""
    run = run_isolated([sys.executable, __file__, name, str(out_dir)], timeout_s=SCENARIO_TIMEOUT_S)
    if run.returncode != 0:
        pytest.fail(f"scenario {name} failed:\n{run.tail()}")
    return json.loads((out_dir / f"{name}.json").read_text(encoding="utf-8"))


def test_probe_actors_spread_over_the_worker_nodes_of_a_cluster(tmp_path: Path) -> None:
    facts = _run_scenario("spread", tmp_path)
    workers, head = set(facts["worker_nodes"]), facts["head_node"]
    assert len(workers) == 2 and head not in workers
    assert facts["failures"] == [] and facts["rows"] == 4
    actors = facts["probe_actors"]
    assert len(actors) == 2 and all(a["required_resources"].get("GPU") == 1 for a in actors)
    # One actor per worker node (each has one GPU); none on the CPU-less head.
    assert sorted(a["node_id"] for a in actors) == sorted(workers)
    # Every feature row was probed by one of those actors (an actor takes rows once it has loaded the model, so
    # which one probes how many depends on which loaded first).
    assert set(_nodes_of_rows(facts)) <= workers


def _nodes_of_rows(facts: dict) -> list[str]:
    """The node of the actor that probed each feature row (a row's ``worker`` is ``host:pid``)."""
    node_of_pid = {a["pid"]: a["node_id"] for a in facts["probe_actors"]}
    return [node_of_pid[int(worker.split(":")[1])] for worker in facts["row_workers"]]


def test_autoscaling_cluster_adds_gpu_nodes_for_queued_probe_actors_and_removes_them_when_idle(
    tmp_path: Path,
) -> None:
    facts = _run_scenario("autoscale", tmp_path)
    assert facts["gpus_before"] == 0  # scale from zero: no GPU node existed when the probe actors were queued
    assert facts["failures"] == [] and facts["rows"] == 4
    gpu_nodes = set(facts["gpu_nodes_seen"])
    assert len(gpu_nodes) == 2  # one GPU node per queued probe actor, up to the node type's max_workers (2)
    actors = facts["probe_actors"]
    assert all(a["required_resources"].get("GPU") == 1 for a in actors)
    # The actors ran on the nodes added for them, and probed every row there (the pool may finish 4 small probes
    # on the first actor up, before the second is placed: an actor that never started holds no work).
    assert {a["node_id"] for a in actors if a["node_id"]} <= gpu_nodes
    assert set(_nodes_of_rows(facts)) <= gpu_nodes
    assert facts["cpu_nodes_seen"]  # the descriptor pipeline's CPU demand was met by CPU nodes, not GPU ones
    # Every idle worker node was removed (within SCALE_DOWN_WAIT_S; how fast is benchmarks' business).
    assert facts["alive_after_idle"] == [facts["head_node"]], facts["alive_after_idle"]


# --------------------------------------------------------------------------------------------------------------
# The scenarios, run in a subprocess by the tests above: ``python test_multinode.py NAME OUT_DIR``.


def _screen_four_candidates(out_dir: Path, pool_config) -> tuple[int, list[str], list[str]]:
    """compute_features (descriptors on Ray Data, probes on the pool) over one small dataset x 4 learning rates."""
    from tuneahead_ray.features.compute import compute_features
    from tuneahead_ray.probe import ProbeSpec
    from tuneahead_ray.schemas import Candidate, DatasetRef, HyperParams
    from tuneahead_ray.testbed import DataSpec, write_dataset

    dataset = DatasetRef(path=write_dataset(DataSpec(size=200, seed=1), out_dir / "clean.jsonl"))
    candidates = [
        Candidate(
            model="default",
            dataset=dataset,
            hp=HyperParams(lr=lr, lora_r=4, lora_alpha=8, max_steps=200, max_seq_len=64),
        )
        for lr in (1e-3, 3e-3, 1e-2, 3e-2)
    ]
    table, failures = compute_features(
        candidates,
        out_dir / "features.parquet",
        model="default",
        spec=ProbeSpec(min_steps=5, max_steps=5),
        pool_config=pool_config,
        cache_dir=out_dir / "cache",
    )
    return table.num_rows, table.column("worker").to_pylist(), [f.error for f in failures]


def _probe_actors(address: str) -> list[dict]:
    """Node, pid and resource request of every RunWorker actor of the cluster at ``address`` (dead ones too)."""
    from ray.util.state import list_actors

    # The address is explicit: left out, the state API would pick any Ray running on this machine.
    filters = [("class_name", "=", "RunWorker")]
    actors = list_actors(address=address, filters=filters, detail=True, raise_on_missing_output=False)
    return [{"node_id": a.node_id, "pid": a.pid, "required_resources": a.required_resources} for a in actors]


def _scenario_spread(out_dir: Path) -> dict:
    """A CPU-less head and two worker nodes with one CPU and one (declared) GPU each, like two GPU machines."""
    from tuneahead_ray._private.workers import PoolConfig

    with local_cluster([{"num_cpus": 1, "num_gpus": 1}] * 2) as cluster:
        rows, row_workers, failures = _screen_four_candidates(out_dir, PoolConfig())
        return {
            "head_node": cluster.head_node.node_id,
            "worker_nodes": [node.node_id for node in cluster.worker_nodes],
            "rows": rows,
            "row_workers": row_workers,
            "failures": failures,
            "probe_actors": _probe_actors(cluster.address),
        }


def _fake_autoscaling_config(gcs_address: str, head_node_id: str) -> dict:
    """A cluster-launcher config for Ray's fake multi-node provider (worker nodes are local raylets).

    The provider is named as an ``external`` module: the ``fake_multinode`` type reads an example.yaml that the
    Ray wheel does not ship.
    """
    empty_lists = (
        "initialization_commands",
        "setup_commands",
        "head_setup_commands",
        "worker_setup_commands",
        "head_start_ray_commands",
        "worker_start_ray_commands",
        "cluster_synced_files",
        "rsync_exclude",
        "rsync_filter",
    )
    return {
        "cluster_name": "tuneahead-fake",
        "max_workers": 4,
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": 0.1,  # 6 s
        "provider": {
            "type": "external",
            "module": "ray.autoscaler._private.fake_multi_node.node_provider.FakeMultiNodeProvider",
            "gcs_address": gcs_address,
            "head_node_id": head_node_id,
            "launch_multiple": True,
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
        },
        "auth": {"ssh_user": "ray"},
        "head_node_type": "ray.head.default",
        "available_node_types": {
            "ray.head.default": {"resources": {}, "node_config": {}, "max_workers": 0},
            # Cheap CPU nodes for the descriptor pipeline, and GPU nodes for the probe actors; both from zero.
            "cpu": {"resources": {"CPU": 1}, "node_config": {}, "min_workers": 0, "max_workers": 2},
            "gpu": {"resources": {"CPU": 1, "GPU": 1}, "node_config": {}, "min_workers": 0, "max_workers": 2},
        },
        "docker": {},
        "file_mounts": {},
        "file_mounts_sync_continuously": False,
        **{key: [] for key in empty_lists},
    }


def _wait_for_idle_scale_down(ray, head_node: str, limit_s: float) -> list[str]:
    """The alive nodes once only the head is left, or after ``limit_s`` (the test then names those left)."""
    deadline = time.monotonic() + limit_s
    while True:
        alive = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
        if alive == [head_node] or time.monotonic() > deadline:
            return alive
        time.sleep(1)


def _scenario_autoscale(out_dir: Path) -> dict:
    """A CPU-less head whose autoscaler (v2, fake provider) may add up to two CPU and two GPU nodes."""
    import psutil
    import ray
    from ray._private import ray_constants
    from ray.autoscaler._private.fake_multi_node.node_provider import FAKE_HEAD_NODE_ID

    from tuneahead_ray._private.workers import PoolConfig

    gcs_port = free_port()
    config = out_dir / "autoscaling.json"
    gcs_address = f"{ray.util.get_node_ip_address()}:{gcs_port}"
    config.write_text(json.dumps(_fake_autoscaling_config(gcs_address, FAKE_HEAD_NODE_ID)), encoding="utf-8")
    # What AutoscalingCluster.start sets for the head's processes (that helper runs `ray stop --force`, which
    # would stop every Ray on this machine, so the head is started here with cluster_utils instead).
    head_only = {"RAY_CLOUD_INSTANCE_ID": FAKE_HEAD_NODE_ID, "RAY_OVERRIDE_NODE_ID_FOR_TESTING": FAKE_HEAD_NODE_ID}
    os.environ.update({"AUTOSCALER_UPDATE_INTERVAL_S": "1", "RAY_FAKE_CLUSTER": "1", "RAY_enable_autoscaler_v2": "1"})
    launched: list[psutil.Process] = []
    try:
        head_args = {"gcs_server_port": gcs_port, "autoscaling_config": str(config)}
        with local_cluster(head=head_args, head_env=head_only) as cluster:
            monitor = cluster.head_node.all_processes[ray_constants.PROCESS_TYPE_MONITOR][0].process
            monitor = psutil.Process(monitor.pid)
            try:
                head_node = cluster.head_node.node_id
                gpus_before = ray.cluster_resources().get("GPU", 0)
                rows, row_workers, failures = _screen_four_candidates(out_dir, PoolConfig(num_workers=2, use_gpus=True))
                actors = _probe_actors(cluster.address)
                added = [n for n in ray.nodes() if n["NodeID"] != head_node]
                gpu_nodes = [n["NodeID"] for n in added if n["Resources"].get("GPU", 0) > 0]
                cpu_nodes = [n["NodeID"] for n in added if n["Resources"].get("GPU", 0) == 0]
                alive = _wait_for_idle_scale_down(ray, head_node, limit_s=SCALE_DOWN_WAIT_S)
                return {
                    "head_node": head_node,
                    "gpus_before": gpus_before,
                    "rows": rows,
                    "row_workers": row_workers,
                    "failures": failures,
                    "probe_actors": actors,
                    "gpu_nodes_seen": gpu_nodes,
                    "cpu_nodes_seen": cpu_nodes,
                    "alive_after_idle": alive,
                }
            finally:
                with contextlib.suppress(psutil.Error):
                    launched = monitor.children(recursive=True)  # the fake worker nodes' processes
    finally:
        for process in launched:
            if process.is_running():
                process.kill()


if __name__ == "__main__":
    _name, _out = sys.argv[1], Path(sys.argv[2])
    _scenarios = {"spread": _scenario_spread, "autoscale": _scenario_autoscale}
    _facts = _scenarios[_name](_out)
    (_out / f"{_name}.json").write_text(json.dumps(_facts), encoding="utf-8")
