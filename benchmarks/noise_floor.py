"""The noise floor of the corpus's ground truth: the same candidate run again with only the training seed changed.

The seed (``HyperParams.seed``) sets the adapter's initialisation and the data order; data, hyperparameters and
the benchmark stay the same. The spread of the final score across seeds is what no predictor of the candidate can
explain: its pooled standard deviation bounds the reachable RMSE from below (RMSE >= floor), and with Gaussian
seed noise a perfect predictor of the seed-averaged score lands within ±3pp of one run only P(|N(0, floor)| <= 3)
of the time.

    python benchmarks/noise_floor.py [--runs 16] [--seeds 101 202]
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

from tests._harness.results import results_path, write_results
from tuneahead_ray.corpus import CorpusWorker, sample_corpus_specs
from tuneahead_ray.probe import ProbeSpec


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("corpus/corpus.parquet"))
    parser.add_argument("--runs", type=int, default=16, help="corpus runs to repeat (a seeded sample)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[101, 202], help="training seeds of the repeats")
    parser.add_argument("--out", type=Path, default=results_path("noise_floor"))
    args = parser.parse_args()

    table = pd.read_parquet(args.corpus, columns=["candidate_id", "score"])
    scores = dict(zip(table["candidate_id"], table["score"], strict=True))
    specs = sample_corpus_specs(len(table), 0)
    worker = CorpusWorker()
    rows = []
    for index in random.Random(7).sample(range(len(specs)), args.runs):
        spec = specs[index]
        repeats = [
            worker.run(spec.model_copy(update={"hp": spec.hp.model_copy(update={"seed": seed})}), ProbeSpec())["score"]
            for seed in args.seeds
        ]
        rows.append({"index": index, "lr": spec.hp.lr, "scores": [scores[spec.run_id()], *repeats]})
        print(json.dumps(rows[-1]), flush=True)
    summary = floor_summary(rows)
    print(json.dumps(summary, indent=2))
    write_results("noise_floor", {**summary, "runs": rows}, args, args.out)
    return 0


def floor_summary(rows: list[dict]) -> dict:
    """Pooled seed standard deviation, overall and by learning-rate band, and the ±3pp ceiling it implies."""

    def pooled(subset: list[dict]) -> float:
        return float(np.sqrt(np.mean([np.var(r["scores"], ddof=1) for r in subset]))) if subset else math.nan

    floor = pooled(rows)
    return {
        "candidates": len(rows),
        "scores_per_candidate": len(rows[0]["scores"]) if rows else 0,
        "seed_std_pp": floor,
        "seed_std_pp_lr_below_5e-3": pooled([r for r in rows if r["lr"] < 5e-3]),
        "seed_std_pp_lr_from_5e-3": pooled([r for r in rows if r["lr"] >= 5e-3]),
        "within_3pp_ceiling": math.erf(3 / (floor * math.sqrt(2))) if floor > 0 else 1.0,
    }


if __name__ == "__main__":
    raise SystemExit(main())
