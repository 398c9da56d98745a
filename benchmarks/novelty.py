"""How honest are the predictor's intervals on data unlike its corpus? Each quality problem of the corpus (label
noise, duplication, format corruption, off-target data) and each task family is held out in turn: the predictor is
trained on the other runs and judged on the held-out ones (RMSE, within ±3pp, 90% interval coverage and width),
beside an in-distribution split.

"Before" is the predictor without novelty (``PredictorConfig(novelty=False)``: cross-fitted conformal intervals);
"after" is the package default: the same predictions, intervals widened by novelty (the distance to the 5 nearest
training runs in a robustly scaled space of the dataset's features, its static descriptors and dataset probe;
Mondrian bins beyond the 90th percentile of in-sample novelty, where candidates are flagged novel, calibrated on
k-means clusters held out in turn). The novelty AUC says how well the score ranks held-out runs above
in-distribution ones.

    python benchmarks/novelty.py          # ~8 minutes on 2 cores

Prints a table and writes ``benchmarks/results/novelty.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests._harness, benchmarks

import numpy as np
from sklearn.metrics import roc_auc_score

from benchmarks.accuracy import TARGET, load_corpus
from tests._harness.results import markdown_table, results_path, write_results
from tuneahead_ray.features import FEATURE_GROUPS
from tuneahead_ray.predictor import FULL_GROUPS, PredictorConfig, ScorePredictor

PROBLEMS = ("label_noise", "duplication", "format_corruption", "off_target")
LEVEL = 0.9


def _evaluate(table, features, train, test, seed: int) -> tuple[dict, np.ndarray]:
    """Figures of the predictor trained on ``train`` rows, judged on ``test`` rows, without and with novelty."""
    rows = table.iloc[test]
    truth = rows[TARGET].to_numpy(float)
    before = ScorePredictor(features, PredictorConfig(seed=seed, novelty=False)).fit(table.iloc[train], TARGET)
    after = ScorePredictor(features, PredictorConfig(seed=seed)).fit(table.iloc[train], TARGET)
    error = truth - after.predict(rows)
    (low, high), (low_n, high_n) = before.predict_interval(rows), after.predict_interval(rows)
    novelty, novel, _ = after.novelty_of(after.matrix(rows))
    row = {
        "runs": len(test),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "within_3pp": float(np.mean(np.abs(error) <= 3)),
        "coverage": float(np.mean((truth >= low) & (truth <= high))),
        "width": float(np.mean(high - low)),
        "coverage_novelty": float(np.mean((truth >= low_n) & (truth <= high_n))),
        "width_novelty": float(np.mean(high_n - low_n)),
        "novel_share": float(np.mean(novel)),
        "novelty_median": float(np.median(novelty)),
    }
    return row, novelty


def table_row(name: str, r: dict) -> dict:
    return {
        "runs judged": name,
        "n": r["runs"],
        "RMSE": f"{r['rmse']:.2f}",
        "within ±3pp": f"{r['within_3pp']:.0%}",
        "coverage (before)": f"{r['coverage']:.0%}",
        "width (before)": f"{r['width']:.1f}",
        "coverage (after)": f"{r['coverage_novelty']:.0%}",
        "width (after)": f"{r['width_novelty']:.1f}",
        "flagged novel": f"{r['novel_share']:.0%}",
        "novelty AUC": f"{r['novelty_auc']:.2f}" if "novelty_auc" in r else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=Path("corpus/corpus.parquet"), help="corpus Parquet file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--groups", default=",".join(FULL_GROUPS),
        help=f"feature groups of the predictor (default: the package default's, {','.join(FULL_GROUPS)})",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=results_path("novelty"))
    args = parser.parse_args(argv)
    started = time.perf_counter()
    table, _ = load_corpus(args.corpus)
    groups = args.groups.split(",")
    if unknown := [group for group in groups if group not in FEATURE_GROUPS]:
        parser.error(f"--groups: no feature group {unknown[0]!r} (the groups: {', '.join(FEATURE_GROUPS)})")
    features = [name for group in groups for name in FEATURE_GROUPS[group]]
    missing = [name for name in features if name not in table.columns]
    if missing:
        parser.error(f"--groups: {args.corpus} has no column {missing[0]} ({len(missing)} missing)")
    order = np.random.default_rng(args.seed).permutation(len(table))
    held_in = order[: int(0.28 * len(table))]
    rows = {}
    rows["in distribution (28% random)"], in_novelty = _evaluate(
        table, features, order[len(held_in) :], held_in, args.seed
    )
    families = table["family_group"].astype(str).to_numpy()
    splits = [(f"held out: {p}", table[f"data_{p}"].to_numpy() > 0) for p in PROBLEMS]
    splits += [(f"held out: family {f}", families == f) for f in sorted(set(families)) if (families == f).mean() < 0.5]
    for name, mask in splits:
        row, novelty = _evaluate(table, features, np.where(~mask)[0], np.where(mask)[0], args.seed)
        labels = np.r_[np.zeros(len(in_novelty)), np.ones(len(novelty))]
        row["novelty_auc"] = float(roc_auc_score(labels, np.r_[in_novelty, novelty]))
        rows[name] = row
        print(f"{name}: done", flush=True)
    print(markdown_table([table_row(name, r) for name, r in rows.items()]))
    report = {"seconds": time.perf_counter() - started, "level": LEVEL, "rows": rows}
    write_results("novelty", report, args, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
