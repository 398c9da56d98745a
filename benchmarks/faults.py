"""Fault injection on a screening: kill probe actors, a worker node and the driver at seeded random points of a
screening on a local multi-node cluster, and check that the result equals an undisturbed run's.

A CPU-less head and two 1-CPU worker nodes (``ray.cluster_utils.Cluster``) hold the work. The undisturbed run and
the disturbed run are each a ``tuneahead-ray screen --address ...`` driver process. Faults fire when the disturbed
run's checkpoint reaches seeded random counts:

* ``actor``: SIGKILL of a live probe actor's process (the pool replaces it and resubmits its jobs);
* ``node``: a worker node removed without warning (then a fresh node added, as an autoscaler would);
* ``driver``: SIGKILL of the driver (it is started again with the same command and resumes).

Checked: the final ``report.json`` and ``candidates.parquet`` equal the undisturbed run's (timings and worker ids
aside), every candidate is in the checkpoint exactly once, and every file parses (writes are atomic).

    python benchmarks/faults.py [--candidates 300] [--seed 0] [--out DIR]

Run it in its own process: it starts and stops its own cluster (set ``RAY_TMPDIR`` to keep it apart from other
Ray instances on the machine).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests._harness, benchmarks

import yaml

from tests._harness.ports import free_port
from tests._harness.results import markdown_table, results_path, write_results

MACHINE_COLUMNS = ["worker", "probe_seconds"]
KINDS = ("actor", "node", "driver")


def write_grid(root: Path, candidates: int) -> Path:
    """Three small testbed datasets and a grid of about ``candidates`` points (cheap probes)."""
    from tuneahead_ray.testbed import DataSpec, write_dataset

    for name, spec in {
        "clean": DataSpec(size=240, seed=1),
        "noisy": DataSpec(size=240, label_noise=0.6, seed=2),
        "off_target": DataSpec(size=240, off_target=0.7, seed=3),
    }.items():
        write_dataset(spec, root / "data" / f"{name}.jsonl")
    per_dataset = max(1, round(candidates / 3))
    ranks = [4, 8, 16, 32, 64]
    epochs = [1, 2]
    lrs = max(1, math.ceil(per_dataset / (len(ranks) * len(epochs))))
    grid = {
        "datasets": ["data/*.jsonl"],
        "hp": {
            "lr": {"log_range": [5.0e-4, 1.6e-2], "num": lrs},
            "lora_r": ranks,
            "epochs": epochs,
            "max_seq_len": 48,
            "batch_size": 16,
        },
        "samples": per_dataset,
        "probe": {"fraction": 0.1, "min_steps": 4, "max_steps": 8},
        "threshold": 50,
        "policy": "expected_gain",
        "budget": {"full_runs": 10},
    }
    path = root / "grid.yaml"
    path.write_text(yaml.safe_dump(grid), encoding="utf-8")
    return path


def _checkpoint_ids(out: Path) -> list[str]:
    path = out / "features.parquet.jsonl"
    if not path.exists():
        return []
    ids = []
    for line in path.read_bytes().splitlines():
        with contextlib.suppress(ValueError, KeyError):  # a torn last line: the store cuts it off on resume
            ids.append(json.loads(line)["candidate_id"])
    return ids


def _driver(grid: Path, out: Path, address: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "tuneahead_ray.cli", "screen", str(grid), "--out", str(out), "--address", address]
    log = open(out.parent / f"{out.name}.log", "a")  # noqa: SIM115 - the process keeps it
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _kill_actor(address: str, rng: random.Random) -> str:
    """SIGKILL a live probe actor; the state API may still list one whose process just went (a removed node)."""
    from ray.util.state import list_actors

    filters = [("class_name", "=", "RunWorker"), ("state", "=", "ALIVE")]
    for _ in range(40):
        actors = list_actors(address=address, filters=filters, detail=True, raise_on_missing_output=False)
        for victim in rng.sample(sorted(actors, key=lambda a: a.actor_id), len(actors)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim.pid, signal.SIGKILL)
                return f"killed probe actor pid {victim.pid}"
        time.sleep(0.25)
    return "no live probe actor"


def _kill_node(cluster, rng: random.Random) -> str:
    nodes = sorted(cluster.worker_nodes, key=lambda n: n.node_id)
    victim = rng.choice(nodes)
    cluster.remove_node(victim, allow_graceful=False)
    cluster.add_node(num_cpus=1)
    return f"removed worker node {victim.node_id[:8]}, added a fresh one"


def _run(grid: Path, out: Path, address: str, faults: list[tuple[int, str]], cluster, rng, timeout: float) -> dict:
    """One screening to completion, injecting ``faults`` (checkpoint count, kind) in order."""
    pending = sorted(faults)
    injected, restarts = [], 0
    driver = _driver(grid, out, address)
    deadline = time.monotonic() + timeout
    while True:
        code = driver.poll()
        done = len(set(_checkpoint_ids(out)))
        if pending and done >= pending[0][0] and code is None:
            at, kind = pending.pop(0)
            if kind == "actor":
                what = _kill_actor(address, rng)
            elif kind == "node":
                what = _kill_node(cluster, rng)
            else:
                os.killpg(driver.pid, signal.SIGKILL)
                driver.wait()
                what = "killed the driver"
            injected.append({"at_checkpoint": done, "kind": kind, "what": what})
            if kind == "driver":
                restarts += 1
                driver = _driver(grid, out, address)
            continue
        if code is not None:
            if code != 0:
                log = out.parent / f"{out.name}.log"
                tail = log.read_text(encoding="utf-8", errors="replace")[-6000:]
                raise RuntimeError(f"screen exited with {code}; the end of {log}:\n{tail}")
            return {"faults": injected, "driver_restarts": restarts, "missed_faults": pending}
        if time.monotonic() > deadline:
            os.killpg(driver.pid, signal.SIGKILL)
            raise TimeoutError(f"screening did not finish in {timeout:.0f} s")
        time.sleep(0.1)


def _comparable_report(out: Path) -> dict:
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    report.pop("timing_s")
    report["grid"].pop("output_dir", None)
    return report


def compare(undisturbed: Path, disturbed: Path, expected: int) -> dict:
    import pandas as pd

    ids = _checkpoint_ids(disturbed)
    a = pd.read_parquet(undisturbed / "candidates.parquet").drop(columns=MACHINE_COLUMNS)
    b = pd.read_parquet(disturbed / "candidates.parquet").drop(columns=MACHINE_COLUMNS)
    try:
        pd.testing.assert_frame_equal(a, b)
        parquet_equal = True
    except AssertionError:
        parquet_equal = False
    return {
        "candidates": expected,
        "checkpointed": len(ids),
        "checkpointed_unique": len(set(ids)),
        "report_equal": _comparable_report(undisturbed) == _comparable_report(disturbed),
        "parquet_equal": parquet_equal,
        "features_parquet_rows": len(pd.read_parquet(disturbed / "features.parquet")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--faults", type=int, default=6, help="faults injected, cycling actor, node, driver")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--out", type=Path, default=results_path("faults"))
    parser.add_argument("--keep", action="store_true", help="keep the runs' directories and logs even if survived")
    args = parser.parse_args()

    import ray
    from ray.cluster_utils import Cluster

    from tuneahead_ray.screening import load_grid

    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="faults-"))
    os.environ.setdefault("TUNEAHEAD_CACHE", str(root / "cache"))
    grid = write_grid(root, args.candidates)
    expected = len(load_grid(grid)[1])
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "include_dashboard": True, "dashboard_port": free_port()},
    )
    started = time.perf_counter()
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)  # for the state API and node bookkeeping
        clean = _run(grid, root / "undisturbed", cluster.address, [], cluster, rng, args.timeout)
        clean_s = time.perf_counter() - started
        lo, hi = max(1, expected // 10), max(2, expected * 9 // 10)
        faults = [(rng.randint(lo, hi), KINDS[i % len(KINDS)]) for i in range(args.faults)]
        disturbed = _run(grid, root / "disturbed", cluster.address, faults, cluster, rng, args.timeout)
        facts = compare(root / "undisturbed", root / "disturbed", expected)
    finally:
        ray.shutdown()
        cluster.shutdown()
    facts.update(
        {
            "seed": args.seed,
            "undisturbed_s": clean_s,
            "total_s": time.perf_counter() - started,
            "injected": disturbed["faults"],
            "driver_restarts": disturbed["driver_restarts"],
            "missed_faults": disturbed["missed_faults"],
            "undisturbed_faults": clean["faults"],
        }
    )
    facts["survived"] = bool(
        facts["report_equal"] and facts["parquet_equal"] and facts["checkpointed"] == facts["checkpointed_unique"]
        and facts["checkpointed_unique"] == expected
    )  # fmt: skip
    row = {
        "candidates": expected,
        "faults injected": f"{len(facts['injected'])} ({', '.join(f['kind'] for f in facts['injected'])})",
        "driver restarts": facts["driver_restarts"],
        "report equal": facts["report_equal"],
        "parquet equal": facts["parquet_equal"],
        "each candidate once": facts["checkpointed"] == facts["checkpointed_unique"] == expected,
    }
    print(markdown_table([row]))
    print("survived" if facts["survived"] else f"NOT survived (runs kept in {root})")
    if facts["survived"] and not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    write_results("faults", facts, args, args.out)
    print(f"wrote {args.out}")
    sys.exit(0 if facts["survived"] else 1)


if __name__ == "__main__":
    main()
