"""Orchestration overhead of ``tuneahead-ray screen``: its wall time on a ~500-candidate grid vs the probe compute
it schedules divided by the number of probe workers (the time a perfect scheduler would need for the probes).

The grid is the demo's 7 datasets x 72 hyperparameter points (504 candidates) on a local Ray with 2 CPUs and 2
probe workers. Wall time covers the whole command after Ray is up (descriptors, probes, predictions, SHAP, the
scheduler, the report); the default predictors are trained beforehand, as a second screening would find them.
Target: wall <= 1.2 x (sum of probe seconds / workers).

    python benchmarks/screen_overhead.py [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests._harness, benchmarks

import yaml

from tests._harness.results import markdown_table, results_path, write_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=results_path("screen_overhead"))
    args = parser.parse_args()

    import pandas as pd
    import ray

    from tuneahead_ray._private.cli_support import quiet_ray_data
    from tuneahead_ray._private.workers import PoolConfig
    from tuneahead_ray.report import write_report
    from tuneahead_ray.screening import DEMO_GRID, load_grid, load_predictors, screen, write_demo

    with tempfile.TemporaryDirectory() as tmp:
        grid_path = write_demo(tmp)
        spec = {
            **DEMO_GRID,
            "hp": {**DEMO_GRID["hp"], "lora_r": [4, 8, 16], "lr": {"log_range": [5e-4, 1.6e-2], "num": 6}},
        }
        grid_path.write_text(yaml.safe_dump(spec), encoding="utf-8")
        grid, candidates = load_grid(grid_path)
        predictors = load_predictors(grid, grid_path.parent)
        ray.init(address="local", num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
        quiet_ray_data()
        started = time.perf_counter()
        out = Path(tmp) / "out"
        result = screen(grid, candidates, predictors, out, pool_config=PoolConfig(num_workers=args.workers))
        write_report(result, grid, out)
        wall = time.perf_counter() - started
        ray.shutdown()
        probes = pd.read_parquet(out / "features.parquet")["probe_seconds"]
    ideal = float(probes.sum()) / args.workers
    timing = result.summary["timing_s"]
    payload = {
        "load_average": os.getloadavg(),
        "candidates": len(candidates),
        "workers": args.workers,
        "wall_s": wall,
        "descriptors_s": timing["descriptors"],
        "probe_stage_s": timing["probes"],
        "probe_compute_s": float(probes.sum()),
        "ideal_s": ideal,
        "overhead_total": wall / ideal - 1,
        "overhead_probe_stage": timing["probes"] / ideal - 1,
        "target_met": wall <= 1.2 * ideal,
    }
    row = {
        "candidates": len(candidates),
        "workers": args.workers,
        "screen wall": f"{wall:.0f} s",
        "probe stage": f"{timing['probes']:.0f} s",
        "probe compute / workers": f"{ideal:.0f} s",
        "overhead (whole)": f"{100 * payload['overhead_total']:.0f}%",
        "overhead (probe stage)": f"{100 * payload['overhead_probe_stage']:.0f}%",
    }
    print(markdown_table([row]))
    print(f"target (whole command <= +20%): {'met' if payload['target_met'] else 'MISSED'}")
    write_results("screen_overhead", payload, args, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
