"""Throughput of the static-descriptor pass: the Ray Data pipeline vs the plain single-process run.

Both runs call :func:`tuneahead_ray.descriptors.pipeline.describe_table` on the same table (``use_ray=True`` /
``False``), so they execute the same per-row and per-sample callables and must produce the same vector; the script
checks that. The single process runs twice: on one core (the plain baseline: no tokenizer thread pool, one torch thread)
and with the libraries' default threads (the Rust tokenizer and torch then use every core for their own parts).
Data: the instruct datasets under ``../shared/data/instruct`` (chat-format JSON arrays) tiled up to
``--rows`` records, or testbed records when that folder is absent. Prints a markdown table and writes
``benchmarks/results/descriptors.json``. Target: >= 1.5x on 2 cores.

    python benchmarks/descriptors.py [--rows 200000] [--sample-size 128] [--cpus 2]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests._harness, benchmarks

import numpy as np
import pyarrow as pa
import ray
import torch

from tests._harness.results import markdown_table, write_results
from tuneahead_ray.data import load_dataset
from tuneahead_ray.descriptors.pipeline import describe_table
from tuneahead_ray.features import DESCRIPTOR_SAMPLE_SIZE, MODEL_FEATURES, ROW_FEATURES
from tuneahead_ray.testbed import DataSpec, generate_records

INSTRUCT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "instruct"
#: Model features may differ in the last float32 bits when the actor runs torch with fewer threads.
MODEL_TOLERANCE = 1e-4


def _source_table() -> tuple[pa.Table, str]:
    files = sorted(INSTRUCT.glob("*.json"))
    if files:
        return pa.concat_tables(load_dataset(path) for path in files), f"{INSTRUCT} ({len(files)} files)"
    records = generate_records(DataSpec(size=20_000, duplication=0.2, format_corruption=0.1, seed=0))
    prompts = [r["messages"][0]["content"] for r in records]
    responses = [r["messages"][1]["content"] for r in records]
    return pa.table({"prompt": prompts, "response": responses}), "testbed (DataSpec size=20000)"


def _scaled(table: pa.Table, rows: int) -> pa.Table:
    """The table repeated record by record until it has ``rows`` rows."""
    return table.take(np.arange(rows) % table.num_rows)


def _timed(table: pa.Table, use_ray: bool, sample_size: int) -> tuple[dict[str, float], float]:
    gc.collect()
    started = time.perf_counter()
    values = describe_table(table, use_ray=use_ray, sample_size=sample_size, seed=0, device="cpu")
    return values, time.perf_counter() - started


def _mismatches(a: dict[str, float], b: dict[str, float]) -> list[str]:
    exact = [name for name in ROW_FEATURES if a[name] != b[name]]
    close = [name for name in MODEL_FEATURES if abs(a[name] - b[name]) > MODEL_TOLERANCE]
    return exact + close


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="records to describe (default 200000)")
    parser.add_argument(
        "--sample-size",
        type=int,
        default=DESCRIPTOR_SAMPLE_SIZE,
        help=f"rows scored by the base model (default {DESCRIPTOR_SAMPLE_SIZE}, as screening and the corpus use)",
    )
    parser.add_argument("--cpus", type=int, default=2, help="CPUs given to Ray (default 2)")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    source, origin = _source_table()
    table = _scaled(source, args.rows)
    print(f"data: {origin}: {source.num_rows} records tiled to {table.num_rows}", flush=True)

    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    default_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    single, single_s = _timed(table, use_ray=False, sample_size=args.sample_size)
    print(f"single process, one core: {single_s:.1f} s", flush=True)
    del os.environ["TOKENIZERS_PARALLELISM"]
    torch.set_num_threads(default_threads)
    threaded, threaded_s = _timed(table, use_ray=False, sample_size=args.sample_size)
    print(f"single process, library threads: {threaded_s:.1f} s", flush=True)

    init_started = time.perf_counter()
    ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    init_s = time.perf_counter() - init_started
    try:
        on_ray, ray_s = _timed(table, use_ray=True, sample_size=args.sample_size)
    finally:
        ray.shutdown()
    print(f"ray data: {ray_s:.1f} s (+ {init_s:.1f} s ray.init, not counted)", flush=True)

    mismatched = sorted(set(_mismatches(single, on_ray)) | set(_mismatches(threaded, on_ray)))
    result = {
        "rows": table.num_rows,
        "source": origin,
        "sample_size": args.sample_size,
        "ray_cpus": args.cpus,
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
        "single_process": {"seconds": single_s, "rows_per_s": table.num_rows / single_s, "threads": 1},
        "single_process_library_threads": {
            "seconds": threaded_s,
            "rows_per_s": table.num_rows / threaded_s,
            "torch_threads": default_threads,
        },
        "ray_data": {"seconds": ray_s, "rows_per_s": table.num_rows / ray_s, "ray_init_seconds": init_s},
        "speedup": single_s / ray_s,
        "speedup_vs_library_threads": threaded_s / ray_s,
        "same_values": not mismatched,
        "mismatched_features": mismatched,
        "descriptors": on_ray,
    }
    write_results("descriptors", result, args)

    timings = {"single process, one core": single_s, "single process, library threads": threaded_s}
    timings[f"Ray Data ({args.cpus} CPUs)"] = ray_s
    rows = [
        {"implementation": name, "rows": table.num_rows, "seconds": f"{s:.1f}", "rows/s": f"{table.num_rows / s:,.0f}"}
        for name, s in timings.items()
    ]
    print()
    print(markdown_table(rows, right=("rows", "seconds", "rows/s")))
    print()
    print(
        f"speed-up: {result['speedup']:.2f}x over one core, {result['speedup_vs_library_threads']:.2f}x over the "
        f"library threads, on {os.cpu_count()} cores; same values: {result['same_values']}"
    )
    print(f"1-min load average before/after: {load_before:.2f} / {result['load_average_1min']['after']:.2f}")
    return 0 if not mismatched else 1


if __name__ == "__main__":
    raise SystemExit(main())
