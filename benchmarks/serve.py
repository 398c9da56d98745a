"""Prediction service throughput and latency: Ray Serve at 1 and 2 replicas beside a plain single-process
FastAPI + uvicorn server running the same app (:func:`create_fastapi_app`) on the same model.

The model is a :class:`ScorePredictor` trained here on the corpus features of ``corpus/corpus.parquet`` (a
synthetic corpus-shaped table when it is absent). Each server gets the same pre-encoded requests from an aiohttp
load generator on 127.0.0.1: single-row requests at a concurrency of 16 and one at a time, and 100-row
requests, after a warm-up; every answer's predictions are checked against the in-process predictor. Prints a
markdown table and writes ``benchmarks/results/serve.json``. Targets on 2 cores: >= 2,000 predictions/s with
batching, p99 <= 50 ms for a single row, Serve >= 0.8x the plain server at 1 replica.

    python benchmarks/serve.py [--single 2000] [--concurrency 16] [--sequential 300] [--big 200] [--big-rows 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tuneahead_ray.predictor import PredictorConfig, ScorePredictor, load_predictor, save_predictor

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
CORPUS = REPO / "corpus" / "corpus.parquet"
TOKEN = "benchmark-token"
#: Quick LightGBM settings: the benchmark measures serving, not model quality.
TRAINING = PredictorConfig(learning_rate=0.1, max_rounds=500, early_stopping_rounds=50, n_jobs=1)


def _training_table() -> tuple[pd.DataFrame, list[str], str]:
    from tuneahead_ray.predictor import CORPUS_FEATURES, load_metadataset, present_columns

    if CORPUS.exists():
        table = load_metadataset(CORPUS, "score")
        return table, present_columns(table, CORPUS_FEATURES, "corpus feature"), f"{CORPUS} ({len(table)} runs)"
    rng = np.random.default_rng(0)
    table = pd.DataFrame({name: rng.normal(size=1000) for name in CORPUS_FEATURES})
    table["score"] = 50 - 8 * table["near_duplicate_rate"] + 4 * table["hp_log10_lr"] + rng.normal(0, 0.5, 1000)
    return table, list(CORPUS_FEATURES), "synthetic corpus-shaped table (1000 rows)"


def _requests(rows: pd.DataFrame, per_request: int, count: int, seed: int) -> list[tuple[bytes, np.ndarray]]:
    """``count`` JSON bodies of ``per_request`` rows sampled from ``rows`` (NaN sent as null), with the indices."""
    rng = np.random.default_rng(seed)
    records = rows.astype(object).where(rows.notna(), None).to_dict("records")
    requests = []
    for _ in range(count):
        picked = rng.integers(0, len(records), per_request)
        requests.append((json.dumps({"rows": [records[i] for i in picked]}).encode(), picked))
    return requests


def _percentile_ms(latencies: list[float], q: float) -> float:
    return float(np.percentile(latencies, q) * 1000)


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
        "requests": len(requests),
        "rows_per_request": len(requests[0][1]),
        "concurrency": concurrency,
        "seconds": seconds,
        "requests_per_s": len(requests) / seconds,
        "predictions_per_s": rows / seconds,
        "p50_ms": _percentile_ms(latencies, 50),
        "p99_ms": _percentile_ms(latencies, 99),
        "mean_batch_requests": float(np.mean(batch_sizes)),
        "max_batch_requests": int(np.max(batch_sizes)),
    }


def _measure(url: str, workloads: dict[str, tuple[list, int]], expected: np.ndarray) -> dict[str, dict]:
    results = {}
    for name, (requests, concurrency) in workloads.items():
        asyncio.run(_drive(url, requests[: max(20, len(requests) // 20)], concurrency, expected))  # warm-up
        results[name] = asyncio.run(_drive(url, requests, concurrency, expected))
        print(
            f"  {name}: {results[name]['requests_per_s']:.0f} req/s, p99 {results[name]['p99_ms']:.1f} ms", flush=True
        )
    return results


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


def _serve_config(model_dir: Path, token_file: Path):
    from tuneahead_ray.serve import ServeConfig

    return ServeConfig(model_dir=model_dir, token_file=token_file)


def run_plain_server(model_dir: Path, token_file: Path, port: int) -> None:
    """The baseline: the same FastAPI app on an in-process backend under one uvicorn process (no Serve)."""
    import uvicorn

    from tuneahead_ray.serve import ModelBackend, create_fastapi_app

    predictor, card = load_predictor(model_dir)
    app = create_fastapi_app(ModelBackend(predictor, card), _serve_config(model_dir, token_file))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _bench_plain(model_dir: Path, token_file: Path, workloads: dict, expected: np.ndarray) -> dict:
    port = _free_port()
    command = [sys.executable, __file__, "--plain-server", str(model_dir), str(token_file), str(port)]
    server = subprocess.Popen(command)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}")
        return _measure(f"http://127.0.0.1:{port}", workloads, expected)
    finally:
        server.terminate()
        server.wait(timeout=30)


def _bench_serve(model_dir: Path, token_file: Path, workloads: dict, expected: np.ndarray, cpus: int) -> dict:
    import ray
    from ray import serve

    from tuneahead_ray.serve import bind_app

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        results = {}
        for replicas in (1, 2):
            options = {"ScoreService": {"num_replicas": replicas}}
            serve.run(bind_app(_serve_config(model_dir, token_file), options), name="bench", route_prefix="/")
            _wait_healthy(url)
            print(f"serve, {replicas} replica(s):", flush=True)
            results[replicas] = _measure(url, workloads, expected)
        return results
    finally:
        serve.shutdown()
        ray.shutdown()


def _table(rows: list[tuple[str, dict]]) -> str:
    lines = [
        "| server | workload | requests | rows/req | conc. | req/s | predictions/s | p50 ms | p99 ms | mean batch |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for server, result in rows:
        for name, r in result.items():
            lines.append(
                f"| {server} | {name} | {r['requests']} | {r['rows_per_request']} | {r['concurrency']} | "
                f"{r['requests_per_s']:.0f} | {r['predictions_per_s']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
                f"{r['mean_batch_requests']:.2f} |"
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--single", type=int, default=2000, help="single-row requests (default 2000)")
    parser.add_argument("--concurrency", type=int, default=16, help="in-flight single-row requests (default 16)")
    parser.add_argument("--sequential", type=int, default=300, help="single-row requests one at a time (default 300)")
    parser.add_argument("--big", type=int, default=200, help="multi-row requests (default 200)")
    parser.add_argument("--big-rows", type=int, default=100, help="rows per multi-row request (default 100)")
    parser.add_argument("--big-concurrency", type=int, default=4, help="in-flight multi-row requests (default 4)")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs given to Ray (default 2)")
    parser.add_argument("--plain-server", nargs=3, metavar=("MODEL_DIR", "TOKEN_FILE", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_server:
        model_dir, token_file, port = args.plain_server
        run_plain_server(Path(model_dir), Path(token_file), int(port))
        return 0

    load_before = os.getloadavg()[0]
    table, features, source = _training_table()
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
        print("plain FastAPI + uvicorn (1 process):", flush=True)
        plain = _bench_plain(model_dir, token_file, workloads, expected)
        serve = _bench_serve(model_dir, token_file, workloads, expected, args.cpus)

    rows = [("plain uvicorn", plain), ("Serve, 1 replica", serve[1]), ("Serve, 2 replicas", serve[2])]
    ratios = {name: serve[1][name]["requests_per_s"] / plain[name]["requests_per_s"] for name in workloads}

    def best(workload: str, key: str, pick=max) -> float:
        return pick(serve[replicas][workload][key] for replicas in (1, 2))

    single_rate, big_rate = best(single, "predictions_per_s"), best(big, "predictions_per_s")
    checks = {
        f"single-row predictions/s >= 2000 (concurrency {args.concurrency}, Serve batching)": single_rate >= 2000,
        f"{args.big_rows}-row predictions/s >= 2000": big_rate >= 2000,
        f"single-row p99 <= 50 ms (concurrency {args.concurrency})": best(single, "p99_ms", min) <= 50,
        "single-row p99 <= 50 ms (sequential)": best(sequential, "p99_ms", min) <= 50,
        "Serve, 1 replica >= 0.8x plain throughput on every workload": all(ratio >= 0.8 for ratio in ratios.values()),
    }
    report = {
        "model_source": source,
        "features": len(features),
        "machine_cores": os.cpu_count(),
        "ray_cpus": args.cpus,
        "platform": platform.platform(),
        "load_average_before": load_before,
        "corpus_build_running": subprocess.run(["pgrep", "-f", "corpus build"], capture_output=True).returncode == 0,
        "plain": plain,
        "serve_1_replica": serve[1],
        "serve_2_replicas": serve[2],
        "serve_1_replica_vs_plain_throughput": ratios,
        "targets": checks,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serve.json").write_text(json.dumps(report, indent=2) + "\n")
    print()
    print(_table(rows))
    print()
    print("Serve (1 replica) / plain throughput: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()))
    for check, passed in checks.items():
        print(f"{'PASS' if passed else 'MISS'}  {check}")
    print(f"wrote {RESULTS / 'serve.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
