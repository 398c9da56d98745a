"""Serve under load: a bounded soak of the prediction service on 127.0.0.1 with a replica killed midway.

A real local Ray Serve app (``ScoreService`` at 2 replicas, bearer token, ``max_rows`` 200, 1 MiB body limit)
serving a model trained here gets a seeded mix of a few thousand requests over loopback: valid predictions of 1 to
20 rows and explanations, and invalid ones (no or a wrong token, malformed JSON, wrong columns, NaN, strings,
empty or too many rows, bodies over the limit, unknown routes and methods). Midway one replica is killed with
``ray.kill``. Checks: every valid request answered 200 with exactly the in-process predictor's numbers, every
invalid one the expected 4xx with a JSON error, no 5xx (a request that gets a 5xx or a dropped connection is
counted, then retried up to 5 times), the killed replica replaced, and the resident memory of the replica and
proxy processes flat (psutil, after a warm-up vs at the end). Prints a table, writes
``benchmarks/results/serve_soak.json`` and exits 1 when a check fails.

    python benchmarks/serve_soak.py [--requests 3000] [--concurrency 8] [--seed 0]

The client and the driver are ``tests/_harness/soak.py``; ``tests/serve/test_soak.py`` runs the same soak with a
few hundred requests.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests._harness, benchmarks

from tests._harness.ports import free_port
from tests._harness.results import markdown_table, results_path, write_results
from tests._harness.soak import TOKEN, deploy, request_mix, soak, train_model, training_table


def table_text(report: dict) -> str:
    expected = {"predict": 200, "explain": 200}
    kinds = []
    for kind, counts in report["by_kind"].items():
        statuses = ", ".join(f"{k.split()[1]}x{v}" for k, v in sorted(counts.items()) if k.startswith("status "))
        kinds.append(
            {
                "request kind": kind,
                "sent": counts["requests"],
                "expected": expected.get(kind, statuses),
                "answered as expected": counts["correct"],
                "5xx / dropped (retried)": counts["5xx or dropped (retried)"],
            }
        )
    memory = [
        {
            "process": f"{m['process']} (pid {pid})",
            "RSS after warm-up (MiB)": f"{m['rss_before_mib']:.1f}",
            "RSS at end (MiB)": f"{m['rss_after_mib']:.1f}",
            "growth (MiB)": f"{m['growth_mib']:+.1f}",
        }
        for pid, m in report["memory"].items()
    ]
    return markdown_table(kinds) + "\n\n" + markdown_table(memory)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests after the warm-up (default 3000)")
    parser.add_argument("--warmup", type=int, default=200, help="requests before the memory baseline (default 200)")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs given to Ray (default 2)")
    args = parser.parse_args()

    import ray
    from ray import serve

    from tuneahead_ray.serve import apply_serve_environment

    environment = apply_serve_environment()  # as `tuneahead-ray serve`: HAProxy behind the guard
    table, features, _ = training_table()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir, token_file = Path(tmp) / "model", Path(tmp) / "token"
        predictor = train_model(table, features, model_dir)
        token_file.write_text(TOKEN)
        requests = request_mix(table, features, predictor, args.warmup + args.requests, args.seed)
        ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        try:
            url = deploy(model_dir, token_file, free_port())
            report = soak(url, requests[: args.warmup], requests[args.warmup :], args.concurrency)
        finally:
            serve.shutdown()
            ray.shutdown()
    report.update(
        ray_environment=environment,
        features=len(features),
        concurrency=args.concurrency,
        seed=args.seed,
        ray_cpus=args.cpus,
    )
    write_results("serve_soak", report, args)
    print(table_text(report))
    print(
        f"\n{report['requests']} requests ({report['valid_requests']} valid, {report['invalid_requests']} invalid) in "
        f"{report['seconds']:.1f} s, {report['requests_per_s']:.0f} req/s, p50 {report['p50_ms']:.1f} ms, "
        f"p99 {report['p99_ms']:.1f} ms; replica {report['kill']['victim']} killed after request "
        f"{report['kill']['at_request']}; 5xx/dropped seen: {report['server_errors']} "
        f"({report['server_errors_at_kill']} at the kill, then retried)"
    )
    for check, passed in report["checks"].items():
        print(f"{'PASS' if passed else 'FAIL'}  {check}")
    print(f"wrote {results_path('serve_soak')}")
    return 0 if all(report["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
