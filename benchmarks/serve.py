"""Prediction service throughput and latency: Ray Serve at 1 and 2 replicas beside a plain single-process
FastAPI + uvicorn server running the same app (:func:`create_fastapi_app`) on the same model, in one run.

The model is a :class:`ScorePredictor` trained here on the corpus features of ``corpus/corpus.parquet`` (a
synthetic corpus-shaped table when it is absent). Serve runs as ``tuneahead-ray serve`` runs it: the Ray
environment of :data:`SERVE_ENVIRONMENT` and the ScoreService options and batching settings of
``configs/serve.yaml`` (with a fixed replica count instead of autoscaling, and no FeatureWorker).

Both servers stay up for the whole run and are measured in alternation, workload by workload, for several
rounds, so that a change in the machine's load hits both alike; the tables give the median over the rounds. Every
measurement sends the same pre-encoded requests from one aiohttp client (keep-alive connections, one per request
in flight) on 127.0.0.1, and checks every answer against the in-process predictor (to 1e-9). It also counts the
CPU time each process group spent per request (client, plain server, Serve replicas, HAProxy, the rest of Ray),
which says where the time goes on a small machine. Prints markdown tables and writes
``benchmarks/results/serve.json``. Targets on 2 cores: >= 2,000 predictions/s with batching, p99 <= 50 ms for a
single row, Serve >= 0.8x the plain server at 1 replica.

    python benchmarks/serve.py [--rounds 5] [--single 3000] [--concurrency 16] [--sequential 500] [--big 300]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests._harness, benchmarks

import numpy as np
import pandas as pd
import yaml

from tests._harness.ports import free_port
from tests._harness.results import markdown_table, results_path, write_results
from tests._harness.soak import training_table
from tuneahead_ray.predictor import PredictorConfig, ScorePredictor, load_predictor, save_predictor
from tuneahead_ray.serve import ServeConfig, apply_serve_environment

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "configs" / "serve.yaml"
TOKEN = "benchmark-token"
#: Quick LightGBM settings: the benchmark measures serving, not model quality.
TRAINING = PredictorConfig(learning_rate=0.1, max_rounds=500, early_stopping_rounds=50, n_jobs=1)
SERVERS = {
    "plain": "plain uvicorn",
    "serve_1": "Serve, 1 replica",
    "serve_2": "Serve, 2 replicas",
    "plain_vs_proxy": "plain uvicorn (again)",
    "serve_1_python_proxy": "Serve, 1 replica, Python proxy (--no-haproxy; Serve's own default)",
}
#: Process groups whose CPU time is counted, by the name a process of this run has.
GROUPS = ("client", "plain server", "Serve replicas", "HAProxy", "Serve proxy", "rest of Ray")


def _requests(rows: pd.DataFrame, per_request: int, count: int, seed: int) -> list[tuple[bytes, np.ndarray]]:
    """``count`` JSON bodies of ``per_request`` rows sampled from ``rows`` (NaN sent as null), with the indices."""
    rng = np.random.default_rng(seed)
    records = rows.astype(object).where(rows.notna(), None).to_dict("records")
    requests = []
    for _ in range(count):
        picked = rng.integers(0, len(records), per_request)
        requests.append((json.dumps({"rows": [records[i] for i in picked]}).encode(), picked))
    return requests


def _shipped_settings(model_dir: Path, token_file: Path) -> tuple[ServeConfig, dict]:
    """configs/serve.yaml's application args (with this run's model and token, no candidate specs) and its
    ScoreService options without autoscaling (the benchmark fixes the replica count)."""
    (app,) = yaml.safe_load(SHIPPED.read_text())["applications"]
    args = {k: v for k, v in app["args"].items() if k not in ("token_env", "data_root")}
    config = ServeConfig.model_validate({**args, "model_dir": model_dir, "token_file": token_file})
    (options,) = [d for d in app["deployments"] if d["name"] == "ScoreService"]
    return config, {k: v for k, v in options.items() if k not in ("name", "autoscaling_config")}


class CpuMeter:
    """CPU seconds spent by this process and its descendants (the plain server, Ray and what Ray starts),
    grouped by what they are."""

    def __init__(self, plain_pid: int) -> None:
        import psutil  # Ray ships it

        self._psutil, self._plain_pid, self._seen = psutil, plain_pid, {}

    def _group(self, process) -> str:
        if process.pid == os.getpid():
            return "client"
        if process.pid == self._plain_pid:
            return "plain server"
        name = " ".join(process.cmdline()[:1]) or process.name()
        if "ServeReplica" in name:
            return "Serve replicas"
        if "ProxyActor" in name:
            return "Serve proxy"
        return "HAProxy" if process.name() == "haproxy" else "rest of Ray"

    def snapshot(self) -> dict[int, tuple[str, float]]:
        me = self._psutil.Process()
        times = {}
        for process in [me, *me.children(recursive=True)]:
            try:
                cpu = process.cpu_times()
                times[process.pid] = (self._group(process), cpu.user + cpu.system)
            except self._psutil.Error:  # exited meanwhile
                continue
        return times

    @staticmethod
    def spent(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
        seconds = dict.fromkeys(GROUPS, 0.0)
        for pid, (group, total) in after.items():
            seconds[group] += total - before.get(pid, (group, 0.0))[1]
        return seconds


async def _drive(url: str, requests: list[tuple[bytes, np.ndarray]], concurrency: int, expected: np.ndarray) -> dict:
    """Send every request with ``concurrency`` in flight; latency per request, throughput over the whole run."""
    import aiohttp

    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    latencies: list[float] = []
    batch_sizes: list[int] = []
    pending = iter(requests)
    connector = aiohttp.TCPConnector(limit=concurrency)

    async def worker(session: aiohttp.ClientSession) -> None:
        for body, picked in pending:
            started = time.perf_counter()
            async with session.post(url + "/v1/predict", data=body, headers=headers) as response:
                payload = await response.json()
            latencies.append(time.perf_counter() - started)
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {payload}")
            got = np.array([p["prediction"] for p in payload["predictions"]])
            if np.max(np.abs(got - expected[picked])) > 1e-9:
                raise RuntimeError("a served prediction differs from the in-process predictor")
            batch_sizes.append(payload["batch"]["requests"])

    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    rows = sum(len(picked) for _, picked in requests)
    return {
        "seconds": seconds,
        "requests_per_s": len(requests) / seconds,
        "predictions_per_s": rows / seconds,
        "p50_ms": float(np.percentile(latencies, 50) * 1000),
        "p99_ms": float(np.percentile(latencies, 99) * 1000),
        "mean_batch_requests": float(np.mean(batch_sizes)),
        "max_batch_requests": int(np.max(batch_sizes)),
    }


def _measure(url: str, requests: list, concurrency: int, expected: np.ndarray, meter: CpuMeter) -> dict:
    before = meter.snapshot()
    result = asyncio.run(_drive(url, requests, concurrency, expected))
    spent = CpuMeter.spent(before, meter.snapshot())
    result["cpu_ms_per_request"] = {group: 1000 * seconds / len(requests) for group, seconds in spent.items()}
    result["load_average"] = os.getloadavg()[0]
    return result


def _median_of(rounds: list[dict]) -> dict:
    """Medians over rounds of every measure (CPU per request too), and the rounds themselves."""
    keys = ("requests_per_s", "predictions_per_s", "p50_ms", "p99_ms", "mean_batch_requests")
    summary = {key: statistics.median(r[key] for r in rounds) for key in keys}
    summary["max_batch_requests"] = max(r["max_batch_requests"] for r in rounds)
    summary["cpu_ms_per_request"] = {g: statistics.median(r["cpu_ms_per_request"][g] for r in rounds) for g in GROUPS}
    summary["rounds"] = rounds
    return summary


def _wait_healthy(url: str, seconds: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not become healthy in {seconds} s")


def run_plain_server(model_dir: Path, token_file: Path, port: int) -> None:
    """The baseline: the same FastAPI app on an in-process backend under one uvicorn process (no Serve)."""
    import uvicorn

    from tuneahead_ray.serve import ModelBackend, create_fastapi_app

    predictor, card = load_predictor(model_dir)
    config, _ = _shipped_settings(model_dir, token_file)
    app = create_fastapi_app(ModelBackend(predictor, card), config)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _deploy(config: ServeConfig, options: dict, replicas: int, url: str) -> None:
    from ray import serve

    from tuneahead_ray.serve import bind_app

    serve.run(bind_app(config, {"ScoreService": {**options, "num_replicas": replicas}}), name="bench", route_prefix="/")
    deadline = time.monotonic() + 120
    while serve.status().applications["bench"].deployments["ScoreService"].replica_states.get("RUNNING") != replicas:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{replicas} replica(s) not running after 120 s")
        time.sleep(0.5)
    _wait_healthy(url)
    time.sleep(2)  # HAProxy learns about new replicas by a reload


def _rounds(measure: Callable[[str, str], dict], servers: dict[str, str], workloads: dict, rounds: int) -> dict:
    """``rounds`` passes over the workloads, each measured on every server in turn; medians per server."""
    results = {server: {name: [] for name in workloads} for server in servers}
    for round_ in range(rounds):
        for name in workloads:
            for server, url in servers.items():
                results[server][name].append(measure(url, name))
        print(f"  round {round_ + 1}/{rounds} done (load average {os.getloadavg()[0]:.1f})", flush=True)
    return {server: {name: _median_of(r) for name, r in by_name.items()} for server, by_name in results.items()}


@contextlib.contextmanager
def _serve_on(port: int, cpus: int) -> Iterator[None]:
    """A fresh local Ray (in the environment of ``os.environ``) with Serve's HTTP entry on ``port``."""
    import ray
    from ray import serve

    ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        yield
    finally:
        serve.shutdown()
        ray.shutdown()


def _run(args: argparse.Namespace, model_dir: Path, token_file: Path, workloads: dict, expected: np.ndarray) -> dict:
    config, options = _shipped_settings(model_dir, token_file)
    plain_port, serve_port = free_port(), free_port()
    command = [sys.executable, __file__, "--plain-server", str(model_dir), str(token_file), str(plain_port)]
    plain = subprocess.Popen(command)
    plain_url, serve_url = f"http://127.0.0.1:{plain_port}", f"http://127.0.0.1:{serve_port}"
    meter = CpuMeter(plain.pid)

    def measure(url: str, name: str) -> dict:
        requests, concurrency = workloads[name]
        return _measure(url, requests, concurrency, expected, meter)

    def warm_up(url: str) -> None:
        for requests, concurrency in workloads.values():
            asyncio.run(_drive(url, requests[: max(50, len(requests) // 10)], concurrency, expected))

    try:
        _wait_healthy(plain_url)
        with _serve_on(serve_port, args.cpus):
            _deploy(config, options, 1, serve_url)
            warm_up(plain_url)
            warm_up(serve_url)
            print("plain uvicorn and Serve with 1 replica, alternating:", flush=True)
            results = _rounds(measure, {"plain": plain_url, "serve_1": serve_url}, workloads, args.rounds)
            _deploy(config, options, 2, serve_url)
            warm_up(serve_url)
            print("Serve with 2 replicas:", flush=True)
            results.update(_rounds(measure, {"serve_2": serve_url}, workloads, args.rounds))
        if args.python_proxy:  # the same app on Serve's default data plane, for reference
            os.environ.update(RAY_SERVE_ENABLE_HA_PROXY="0", RAY_SERVE_THROUGHPUT_OPTIMIZED="0")
            with _serve_on(serve_port, args.cpus):
                _deploy(config, options, 1, serve_url)
                warm_up(serve_url)
                print("Serve with 1 replica behind the Python proxy, alternating with plain uvicorn:", flush=True)
                servers = {"plain_vs_proxy": plain_url, "serve_1_python_proxy": serve_url}
                results.update(_rounds(measure, servers, workloads, args.rounds))
        return results
    finally:
        plain.terminate()
        plain.wait(timeout=30)


def _measured(results: dict) -> list[tuple[str, str]]:
    return [(server, label) for server, label in SERVERS.items() if server in results]


def _table(results: dict, workloads: dict) -> str:
    rows = []
    for server, label in _measured(results):
        for name, (_, concurrency) in workloads.items():
            r = results[server][name]
            rows.append(
                {
                    "server": label,
                    "workload": name,
                    "conc.": concurrency,
                    "req/s": f"{r['requests_per_s']:.0f}",
                    "predictions/s": f"{r['predictions_per_s']:.0f}",
                    "p50 ms": f"{r['p50_ms']:.1f}",
                    "p99 ms": f"{r['p99_ms']:.1f}",
                    "mean batch": f"{r['mean_batch_requests']:.1f}",
                }
            )
    return markdown_table(rows)


def _cpu_table(results: dict, workloads: dict) -> str:
    rows = [
        {"server": label, "workload": name}
        | {g: f"{results[server][name]['cpu_ms_per_request'][g]:.3f}" for g in GROUPS}
        for server, label in _measured(results)
        for name in workloads
    ]
    return markdown_table(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="measurements per server and workload (default 5)")
    parser.add_argument("--single", type=int, default=3000, help="single-row requests (default 3000)")
    parser.add_argument("--concurrency", type=int, default=16, help="in-flight single-row requests (default 16)")
    parser.add_argument("--sequential", type=int, default=500, help="single-row requests one at a time (default 500)")
    parser.add_argument("--big", type=int, default=300, help="multi-row requests (default 300)")
    parser.add_argument("--big-rows", type=int, default=100, help="rows per multi-row request (default 100)")
    parser.add_argument("--big-concurrency", type=int, default=4, help="in-flight multi-row requests (default 4)")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs given to Ray (default 2)")
    parser.add_argument(
        "--python-proxy",
        action="store_true",
        help="also measure 1 replica on Serve's default data plane (Python proxy)",
    )
    parser.add_argument("--plain-server", nargs=3, metavar=("MODEL_DIR", "TOKEN_FILE", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_server:
        model_dir, token_file, port = args.plain_server
        run_plain_server(Path(model_dir), Path(token_file), int(port))
        return 0

    environment = apply_serve_environment()  # before Ray starts, as `tuneahead-ray serve` (HAProxy, guarded)
    load_before = os.getloadavg()
    table, features, source = training_table()
    started = time.perf_counter()
    predictor = ScorePredictor(features, TRAINING).fit(table, "score")
    print(f"model: {len(features)} features from {source}, trained in {time.perf_counter() - started:.1f} s")
    expected = predictor.predict(table)
    single, sequential, big = "1 row", "1 row, sequential", f"{args.big_rows} rows"
    workloads = {
        single: (_requests(table[features], 1, args.single, seed=1), args.concurrency),
        sequential: (_requests(table[features], 1, args.sequential, seed=3), 1),
        big: (_requests(table[features], args.big_rows, args.big, seed=2), args.big_concurrency),
    }
    with tempfile.TemporaryDirectory() as tmp:
        model_dir, token_file = Path(tmp) / "model", Path(tmp) / "token"
        save_predictor(predictor, model_dir)
        token_file.write_text(TOKEN)
        results = _run(args, model_dir, token_file, workloads, expected)
    load_after = os.getloadavg()

    plain, serve1 = results["plain"], results["serve_1"]
    ratios = {name: serve1[name]["requests_per_s"] / plain[name]["requests_per_s"] for name in workloads}

    def best(workload: str, key: str, pick=max) -> float:
        return pick(results[server][workload][key] for server in ("serve_1", "serve_2"))

    checks = {
        f"single-row predictions/s >= 2000 (concurrency {args.concurrency}, Serve batching)": best(
            single, "predictions_per_s"
        )
        >= 2000,
        f"{args.big_rows}-row predictions/s >= 2000": best(big, "predictions_per_s") >= 2000,
        f"single-row p99 <= 50 ms (concurrency {args.concurrency})": best(single, "p99_ms", min) <= 50,
        "single-row p99 <= 50 ms (sequential)": best(sequential, "p99_ms", min) <= 50,
    }
    checks.update({f"Serve, 1 replica >= 0.8x plain throughput ({name})": r >= 0.8 for name, r in ratios.items()})
    report = {
        "model_source": source,
        "features": len(features),
        "ray_cpus": args.cpus,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "rounds": args.rounds,
        "workloads": {
            name: {"requests": len(r), "rows_per_request": len(r[0][1]), "concurrency": c}
            for name, (r, c) in workloads.items()
        },
        "ray_environment": environment,
        "serve_options": _shipped_settings(Path("model"), Path("token"))[1],
        "results": results,
        "serve_1_replica_vs_plain_throughput": ratios,
        "targets": checks,
    }
    write_results("serve", report, args)
    print()
    print(f"medians of {args.rounds} rounds; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    print(_table(results, workloads))
    print()
    print("CPU ms per request, by process group (median of rounds):")
    print(_cpu_table(results, workloads))
    print()
    print("Serve (1 replica) / plain throughput: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()))
    for check, passed in checks.items():
        print(f"{'PASS' if passed else 'MISS'}  {check}")
    print(f"wrote {results_path('serve')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
