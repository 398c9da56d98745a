"""The Serve soak's client and driver, shared by ``benchmarks/serve_soak.py`` (a few thousand requests) and
``tests/serve/test_soak.py`` (a few hundred): a model trained here, a seeded mix of valid and invalid requests, an
HTTP client that retries 5xx and dropped connections, the ``ScoreService`` deployment at 2 replicas, a replica
killed midway, and the report of what was answered how (``checks`` says what passed)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

CORPUS = Path(__file__).resolve().parents[2] / "corpus" / "corpus.parquet"
TOKEN = "soak-token"
APP = "soak"
MAX_ROWS = 200
MIB = 1 << 20
#: Memory may grow by this much per process between the warm-up and the end (allocator noise, batch buffers).
RSS_SLACK_MIB, RSS_SLACK_SHARE = 48.0, 0.25
RETRIES = 5


# ------------------------------------------------------------------------------------------- the model


def training_table(rows: int = 1000) -> tuple[pd.DataFrame, list[str], str]:
    """The shipped corpus's features and scores, or a corpus-shaped synthetic table of ``rows`` rows when it is
    absent; and which of the two it is."""
    from tuneahead_ray.features import CORPUS_FEATURES
    from tuneahead_ray.predictor import load_metadataset, present_columns

    if CORPUS.exists():
        table = load_metadataset(CORPUS, "score")
        return table, present_columns(table, CORPUS_FEATURES, "corpus feature"), f"{CORPUS} ({len(table)} runs)"
    rng = np.random.default_rng(0)
    table = pd.DataFrame({name: rng.normal(size=rows) for name in CORPUS_FEATURES})
    table["score"] = 50 - 8 * table["near_duplicate_rate"] + 4 * table["hp_log10_lr"] + rng.normal(0, 0.5, rows)
    return table, list(CORPUS_FEATURES), f"synthetic corpus-shaped table ({rows} rows)"


def train_model(table: pd.DataFrame, features: list[str], directory: Path):
    """A quick LightGBM model (the soak measures serving, not accuracy), saved to ``directory``."""
    from tuneahead_ray.predictor import PredictorConfig, ScorePredictor, save_predictor

    config = PredictorConfig(learning_rate=0.1, max_rounds=300, early_stopping_rounds=30, n_jobs=1)
    predictor = ScorePredictor(features, config).fit(table, "score")
    save_predictor(predictor, directory)
    return predictor


# ------------------------------------------------------------------------------------------ the requests


@dataclass
class Request:
    kind: str
    method: str
    path: str
    body: bytes | None
    headers: dict[str, str]
    status: int  # expected
    expected: np.ndarray | None = None  # expected predictions of a valid request


@dataclass
class Outcome:
    kind: str
    expected_status: int
    status: int | None = None
    correct: bool = False
    server_errors: list[tuple[float, str]] = field(default_factory=list)  # (clock, kind): every 5xx or drop
    seconds: float = 0.0


def _auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def _row_json(record: dict) -> str:
    return json.dumps(record)


def request_mix(table: pd.DataFrame, features: list[str], predictor, count: int, seed: int) -> list[Request]:
    """``count`` requests: ~60% valid predictions, ~5% explanations, the rest invalid in every way we know."""
    rng = np.random.default_rng(seed)
    frame = table[features]
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    expected_all = predictor.predict(frame)
    good = _row_json(records[0])

    def rows_body(rows: list[str]) -> bytes:
        return ('{"rows": [' + ", ".join(rows) + "]}").encode()

    def with_first(value: str) -> str:
        return good.replace(f'"{features[0]}": {json.dumps(records[0][features[0]])}', f'"{features[0]}": {value}', 1)

    invalid = {
        "no token": ("POST", "/v1/predict", rows_body([good]), {"Content-Type": "application/json"}, 401),
        "wrong token": ("POST", "/v1/predict", rows_body([good]), _auth("nope"), 401),
        "malformed JSON": ("POST", "/v1/predict", b'{"rows": [{"a": 1', _auth(), 400),
        "top-level list": ("POST", "/v1/predict", f"[{good}]".encode(), _auth(), 422),
        "missing column": ("POST", "/v1/predict", rows_body([f'{{"{features[0]}": 1}}']), _auth(), 422),
        "unknown column": ("POST", "/v1/predict", rows_body([good[:-1] + ', "extra": 1}']), _auth(), 422),
        "NaN value": ("POST", "/v1/predict", rows_body([with_first("NaN")]), _auth(), 422),
        "string value": ("POST", "/v1/explain", rows_body([with_first('"0.5"')]), _auth(), 422),
        "empty rows": ("POST", "/v1/predict", rows_body([]), _auth(), 422),
        "too many rows": ("POST", "/v1/predict", rows_body([good] * (MAX_ROWS + 1)), _auth(), 413),
        "oversized body": ("POST", "/v1/predict", rows_body([good, '"' + "x" * MIB + '"']), _auth(), 413),
        "oversized, no token": ("POST", "/v1/explain", b"{" + b" " * (2 * MIB) + b"}", {}, 401),
        "unknown route": ("GET", "/v1/nothing", None, _auth(), 404),
        "wrong method": ("GET", "/v1/predict", None, _auth(), 405),
    }
    names = list(invalid)
    requests = []
    for _ in range(count):
        draw = rng.random()
        if draw < 0.60:
            picked = rng.integers(0, len(records), int(rng.choice([1, 1, 1, 2, 5, 20])))
            body = rows_body([_row_json(records[i]) for i in picked])
            requests.append(Request("predict", "POST", "/v1/predict", body, _auth(), 200, expected_all[picked]))
        elif draw < 0.65:
            picked = rng.integers(0, len(records), int(rng.integers(1, 4)))
            body = json.dumps({"rows": [records[i] for i in picked], "top_k": 3}).encode()
            requests.append(Request("explain", "POST", "/v1/explain", body, _auth(), 200, expected_all[picked]))
        else:
            name = names[int(rng.integers(len(names)))]
            method, path, body, headers, status = invalid[name]
            requests.append(Request(name, method, path, body, headers, status))
    return requests


def _check(request: Request, status: int, payload: object) -> bool:
    if status != request.status:
        return False
    if request.expected is None:
        return isinstance(payload, dict) and isinstance(payload.get("error"), str)
    items = payload["predictions"] if request.kind == "predict" else payload["explanations"]
    got = np.array([item["prediction"] for item in items], dtype=float)
    return got.shape == request.expected.shape and bool(np.max(np.abs(got - request.expected)) <= 1e-9)


async def _send(client, request: Request) -> Outcome:
    import httpx

    outcome = Outcome(request.kind, request.status)
    started = time.perf_counter()
    for attempt in range(RETRIES + 1):
        try:
            response = await client.request(request.method, request.path, content=request.body, headers=request.headers)
        except httpx.TransportError as err:
            outcome.server_errors.append((time.perf_counter(), type(err).__name__))
        else:
            if response.status_code < 500:
                try:
                    payload = response.json()
                except ValueError:
                    payload = None
                outcome.status, outcome.correct = response.status_code, _check(request, response.status_code, payload)
                break
            outcome.server_errors.append((time.perf_counter(), f"HTTP {response.status_code}"))
        if attempt < RETRIES:
            await asyncio.sleep(0.3)
    outcome.seconds = time.perf_counter() - started
    return outcome


async def drive(url: str, requests: list[Request], concurrency: int, on_done=None) -> list[Outcome]:
    """Send every request with ``concurrency`` in flight; ``on_done(count)`` runs after each one finishes."""
    import httpx

    outcomes: list[Outcome | None] = [None] * len(requests)
    pending = iter(enumerate(requests))
    done = 0
    limits = httpx.Limits(max_connections=concurrency)

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

        async def worker() -> None:
            nonlocal done
            for index, request in pending:
                outcomes[index] = await _send(client, request)
                done += 1
                if on_done is not None:
                    await on_done(done)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return outcomes  # type: ignore[return-value]


# ------------------------------------------------------------------------------------ the service on Ray


def deploy(model_dir: Path, token_file: Path, port: int) -> str:
    """Serve on 127.0.0.1:``port`` (Ray must be running): ScoreService at 2 replicas, fast health checks."""
    from ray import serve

    from tuneahead_ray.serve import ServeConfig, bind_app

    serve.start(http_options={"host": "127.0.0.1", "port": port})
    config = ServeConfig(model_dir=model_dir, token_file=token_file, max_rows=MAX_ROWS, max_body_bytes=MIB)
    options = {"ScoreService": {"num_replicas": 2, "health_check_period_s": 1}}
    serve.run(bind_app(config, options), name=APP, route_prefix="/")
    return f"http://127.0.0.1:{port}"


def score_replicas() -> set[str]:
    import ray

    return {
        actor["name"]
        for actor in ray.util.list_named_actors(all_namespaces=True)
        if actor["namespace"] == "serve" and f"{APP}#ScoreService#" in actor["name"]
    }


def serve_processes() -> dict[int, str]:
    """PID -> actor name of every Serve actor of this Ray (proxy, controller, replicas), asked of the actors
    themselves, so that other Ray instances on the machine are not measured."""
    import ray

    found = {}
    for actor in ray.util.list_named_actors(all_namespaces=True):
        if actor["namespace"] == "serve":
            handle = ray.get_actor(actor["name"], namespace="serve")
            found[ray.get(handle.__ray_call__.remote(lambda self: os.getpid()), timeout=30)] = actor["name"]
    return found


def rss_mib(pids: dict[int, str]) -> dict[int, float]:
    import psutil

    sizes = {}
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            sizes[pid] = psutil.Process(pid).memory_info().rss / MIB
    return sizes


def kill_replica() -> str:
    import ray

    victim = sorted(score_replicas())[0]
    ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
    return victim


def wait_replaced(before: set[str], victim: str, seconds: float = 120) -> set[str]:
    """The ScoreService replica set once the victim is gone and two replicas run again."""
    from ray import serve

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        replicas = score_replicas()
        running = serve.status().applications[APP].deployments["ScoreService"].replica_states.get("RUNNING", 0)
        if victim not in replicas and len(replicas) == 2 and running == 2:
            return replicas
        time.sleep(0.5)
    raise AssertionError(f"the killed replica {victim} was not replaced within {seconds} s: {score_replicas()}")


# ------------------------------------------------------------------------------------------------ a soak


def soak(url: str, warmup: list[Request], requests: list[Request], concurrency: int) -> dict:
    """Send ``warmup``, record RSS, send ``requests`` killing a replica at the midpoint, wait for the replacement,
    record RSS again; returns the report (``checks`` says what passed)."""
    warm = asyncio.run(drive(url, warmup, concurrency))
    processes = serve_processes()
    rss_before = rss_mib(processes)
    replicas_before = score_replicas()
    kill = {"at_request": len(requests) // 2, "victim": None, "seconds": None}
    started = time.perf_counter()

    async def maybe_kill(done: int) -> None:
        if done == kill["at_request"]:
            kill["clock"] = time.perf_counter()
            kill["victim"] = await asyncio.to_thread(kill_replica)
            kill["seconds"] = kill["clock"] - started

    outcomes = asyncio.run(drive(url, requests, concurrency, maybe_kill))
    seconds = time.perf_counter() - started
    replicas_after = wait_replaced(replicas_before, kill["victim"])
    rss_after = rss_mib(processes)
    memory = {
        str(pid): {
            "process": processes[pid],
            "rss_before_mib": rss_before[pid],
            "rss_after_mib": rss_after[pid],
            "growth_mib": rss_after[pid] - rss_before[pid],
        }
        for pid in sorted(rss_before)
        if pid in rss_after
    }
    return summarize(outcomes, warm, seconds, kill, memory, replicas_before, replicas_after, concurrency)


def summarize(outcomes, warm, seconds, kill, memory, replicas_before, replicas_after, concurrency) -> dict:
    by_kind: dict[str, Counter] = {}
    for outcome in outcomes:
        counts = by_kind.setdefault(outcome.kind, Counter())
        counts["requests"] += 1
        counts[f"status {outcome.status}"] += 1
        counts["correct"] += outcome.correct
        counts["5xx or dropped (retried)"] += len(outcome.server_errors)
    kill_clock = kill.pop("clock")
    server_errors = [(clock - kill_clock, kind) for o in outcomes for clock, kind in o.server_errors]
    # Requests in flight on the killed replica can only fail from the kill on (SIGKILL: Serve answers them 500; the
    # proxy drops their connections until the replacement serves): none before it, at most the in-flight ones after.
    at_kill = [(delay, kind) for delay, kind in server_errors if delay >= 0]
    valid = [o for o in outcomes if o.expected_status == 200]
    invalid = [o for o in outcomes if o.expected_status != 200]
    latencies = np.array([o.seconds for o in outcomes])
    flat = all(
        m["growth_mib"] <= RSS_SLACK_MIB + RSS_SLACK_SHARE * m["rss_before_mib"] for m in memory.values()
    ) and bool(memory)
    checks = {
        "every valid request answered 200 with the in-process predictions": all(o.correct for o in valid),
        "every invalid request answered its 4xx with a JSON error": all(o.correct for o in invalid),
        f"no 5xx or dropped connection before the kill, and after it at most the requests in flight "
        f"(<= {concurrency})": len(at_kill) == len(server_errors) <= concurrency,
        "the killed replica was replaced": kill["victim"] not in replicas_after and len(replicas_after) == 2,
        f"replica and proxy RSS flat (growth <= {RSS_SLACK_MIB:g} MiB + {RSS_SLACK_SHARE:.0%})": flat,
    }
    return {
        "requests": len(outcomes),
        "warmup_requests": len(warm),
        "valid_requests": len(valid),
        "invalid_requests": len(invalid),
        "seconds": seconds,
        "requests_per_s": len(outcomes) / seconds,
        "p50_ms": float(np.percentile(latencies, 50) * 1000),
        "p99_ms": float(np.percentile(latencies, 99) * 1000),
        "server_errors": len(server_errors),
        "server_errors_at_kill": len(at_kill),
        "server_error_kinds": dict(Counter(kind for _, kind in server_errors)),
        "server_error_delays_after_kill_s": [delay for delay, _ in server_errors],
        "requests_retried": sum(bool(o.server_errors) for o in outcomes),
        "kill": kill,
        "replicas_before": sorted(replicas_before),
        "replicas_after": sorted(replicas_after),
        "memory": memory,
        "by_kind": {kind: dict(counts) for kind, counts in sorted(by_kind.items())},
        "checks": checks,
    }
