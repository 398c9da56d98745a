"""The noise floor of the corpus's ground truth: the same candidate run again with only the training seed changed.

The seed (``HyperParams.seed``) sets the adapter's initialisation and the data order; data, hyperparameters and
the benchmark stay the same. The spread of the final score across seeds is what no predictor of the candidate can
explain: its pooled standard deviation bounds the reachable RMSE from below (RMSE >= floor), and with Gaussian
seed noise a perfect predictor of the seed-averaged score lands within ±3pp of one run only P(|N(0, floor)| <= 3)
of the time.

The candidates are a seeded sample of the corpus's runs (their data and hyperparameters as stored), each trained
with its own seed and with every ``--seeds`` seed, and scored on the testbed benchmark at each ``--items-per-cell``
(16: the 480-item benchmark, 160: the 4,800-item one), so that the floors of two benchmark sizes come from the same
candidates and seeds. Where the corpus was scored on a benchmark of the same size, its stored score of the run's
own seed is checked against the recomputed one (the ground truth is reproducible).

    python benchmarks/noise_floor.py [--corpus corpus/corpus.parquet] [--runs 16] [--seeds 101 202]
        [--items-per-cell 16 160]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests._harness, benchmarks

import numpy as np
import pandas as pd

from tests._harness.results import markdown_table, results_path, write_results
from tuneahead_ray.corpus import CorpusSpec, CorpusWorker
from tuneahead_ray.evaluation import TestbedSpec
from tuneahead_ray.probe import ProbeSpec
from tuneahead_ray.schemas import HyperParams
from tuneahead_ray.testbed import DataSpec

#: Benchmark size of a corpus built before the ``benchmark_items`` column: the 480-item benchmark.
_FIRST_BENCHMARK_ITEMS = 480


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("corpus/corpus.parquet"))
    parser.add_argument("--runs", type=int, default=16, help="corpus runs to repeat (a seeded sample)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[101, 202], help="training seeds of the repeats")
    parser.add_argument("--items-per-cell", type=int, nargs="+", default=[160], help="benchmark sizes to score on")
    parser.add_argument("--out", type=Path, default=results_path("noise_floor"))
    args = parser.parse_args()

    table = pd.read_parquet(args.corpus)
    stored_items = int(table["benchmark_items"].iloc[0]) if "benchmark_items" in table else _FIRST_BENCHMARK_ITEMS
    sample = random.Random(7).sample(range(len(table)), min(args.runs, len(table)))
    rows = []
    for items_per_cell in args.items_per_cell:
        worker = CorpusWorker(benchmark=TestbedSpec(items_per_cell=items_per_cell))
        benchmark_items = 30 * items_per_cell
        for index in sample:
            stored = table.iloc[index]
            spec = CorpusSpec(
                data=DataSpec.model_validate_json(stored["data_spec"]), hp=HyperParams.model_validate_json(stored["hp"])
            )
            seeds = [spec.hp.seed, *args.seeds]
            scores = [_score(worker, spec, seed) for seed in seeds]
            row = {
                "benchmark_items": benchmark_items,
                "index": index,
                "lr": spec.hp.lr,
                "total_steps": spec.hp.total_steps(spec.data.size),
                "seeds": seeds,
                "scores": scores,
            }
            if benchmark_items == stored_items:
                row["stored_score"] = float(stored["score"])
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary = {str(items): floor_summary([r for r in rows if r["benchmark_items"] == items]) for items in _sizes(rows)}
    print(markdown_table(floor_table(summary)))
    write_results(
        "noise_floor", {"corpus": str(args.corpus), "by_benchmark_items": summary, "runs": rows}, args, args.out
    )
    return 0


def _sizes(rows: list[dict]) -> list[int]:
    return sorted({r["benchmark_items"] for r in rows})


def _score(worker: CorpusWorker, spec: CorpusSpec, seed: int) -> float:
    run = spec.model_copy(update={"hp": spec.hp.model_copy(update={"seed": seed})})
    return float(worker.run(run, ProbeSpec())["score"])


def floor_summary(rows: list[dict]) -> dict:
    """Pooled seed standard deviation, overall and by learning-rate band, the ±3pp ceiling it implies, and how many
    recomputed scores of the runs' own seeds equal the corpus's."""

    def pooled(subset: list[dict]) -> float:
        return float(np.sqrt(np.mean([np.var(r["scores"], ddof=1) for r in subset]))) if subset else math.nan

    floor = pooled(rows)
    checked = [r for r in rows if "stored_score" in r]
    return {
        "candidates": len(rows),
        "scores_per_candidate": len(rows[0]["scores"]) if rows else 0,
        "seed_std_pp": floor,
        "seed_std_pp_lr_below_5e-3": pooled([r for r in rows if r["lr"] < 5e-3]),
        "seed_std_pp_lr_from_5e-3": pooled([r for r in rows if r["lr"] >= 5e-3]),
        "within_3pp_ceiling": math.erf(3 / (floor * math.sqrt(2))) if floor > 0 else 1.0,
        "stored_scores_reproduced": f"{sum(abs(r['scores'][0] - r['stored_score']) < 1e-6 for r in checked)}/"
        f"{len(checked)}",
    }


def floor_table(summary: dict) -> list[dict]:
    """One row per benchmark size."""
    return [
        {
            "benchmark items": items,
            "candidates x scores": f"{s['candidates']} x {s['scores_per_candidate']}",
            "seed std (pp)": f"{s['seed_std_pp']:.2f}",
            "lr < 5e-3": f"{s['seed_std_pp_lr_below_5e-3']:.2f}",
            "lr >= 5e-3": f"{s['seed_std_pp_lr_from_5e-3']:.2f}",
            "±3pp ceiling": f"{100 * s['within_3pp_ceiling']:.0f}%",
            "corpus scores reproduced": s["stored_scores_reproduced"],
        }
        for items, s in summary.items()
    ]


if __name__ == "__main__":
    raise SystemExit(main())
