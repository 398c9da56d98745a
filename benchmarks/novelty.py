"""How honest are the predictor's intervals on data unlike its corpus? Each quality problem of the corpus (label
noise, duplication, format corruption, off-target data) and each task family is held out in turn: the predictor is
trained on the other runs and judged on the held-out ones (RMSE, within ±3pp, 90% interval coverage and width),
beside an in-distribution split.

Next to today's intervals it measures a candidate method that is **not in the package yet** (issue 20): a novelty
score (mean distance to the 10 nearest training runs in a robustly scaled feature space, relative to the
training runs' own) and intervals conditioned on it: up to the 90th percentile of in-sample novelty the usual
cross-fitted quantile; beyond it, Mondrian bins by novelty calibrated on out-of-fold residuals pooled with
residuals of clusters held out in turn (k-means on the same space), never narrower than the in-sample quantile.
The novelty AUC says how well the score ranks held-out runs above in-distribution ones.

    python benchmarks/novelty.py          # ~5 minutes on 2 cores

Prints a table and writes ``benchmarks/results/novelty.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import lightgbm as lgb
import numpy as np
from accuracy import RESULTS, TARGET, load_corpus
from sklearn.cluster import KMeans
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold, KFold
from sklearn.neighbors import NearestNeighbors

from tuneahead_ray.predictor import PredictorConfig, ScorePredictor, corpus_feature_groups, feature_matrix
from tuneahead_ray.predictor._model import lightgbm_params

PROBLEMS = ("label_noise", "duplication", "format_corruption", "off_target")
LEVEL = 0.9


class Novelty:
    """Mean distance to the ``k`` nearest training rows (median/IQR-scaled features, missing values at the
    median), divided by the training rows' own typical distance: about 1 in distribution."""

    def __init__(self, x: np.ndarray, k: int = 10) -> None:
        iqr = np.nanpercentile(x, 75, axis=0) - np.nanpercentile(x, 25, axis=0)
        std = np.nanstd(x, axis=0)
        self.center = np.nanmedian(x, axis=0)
        self.scale = np.where(iqr > 1e-12, iqr, np.where(std > 1e-12, std, 1.0))
        self.k = k
        self.space = self.scaled(x)
        self.neighbours = NearestNeighbors(n_neighbors=k + 1).fit(self.space)
        self.typical = float(np.median(self.neighbours.kneighbors(self.space)[0][:, 1:].mean(axis=1)))

    def scaled(self, x: np.ndarray) -> np.ndarray:
        z = (x - self.center) / self.scale
        return np.clip(np.where(np.isnan(z), 0.0, z), -50, 50)

    def score(self, x: np.ndarray) -> np.ndarray:
        return self.neighbours.kneighbors(self.scaled(x), n_neighbors=self.k)[0].mean(axis=1) / self.typical


def _quantile(residuals: np.ndarray, level: float) -> float:
    ordered = np.sort(np.abs(residuals))
    rank = int(np.ceil((len(ordered) + 1) * level))
    return float(ordered[min(rank, len(ordered)) - 1])


def _pairs(x: np.ndarray, y: np.ndarray, folds, params: dict, rounds: int) -> np.ndarray:
    """(novelty, residual) of every row predicted by a model of the other folds."""
    pairs = []
    for train, valid in folds:
        booster = lgb.train(params, lgb.Dataset(x[train], y[train], params={"verbosity": -1}), rounds)
        pairs.append(np.c_[Novelty(x[train]).score(x[valid]), y[valid] - booster.predict(x[valid])])
    return np.vstack(pairs)


def novelty_interval(x: np.ndarray, y: np.ndarray, params: dict, rounds: int, seed: int, min_bin: int = 30):
    """(in-sample quantile, novelty bin edges, per-bin quantiles) of the candidate method."""
    inside = _pairs(x, y, KFold(5, shuffle=True, random_state=seed).split(x), params, rounds)
    labels = KMeans(8, n_init=4, random_state=seed).fit_predict(Novelty(x).space)
    outside = _pairs(x, y, GroupKFold(8).split(x, groups=labels), params, rounds)
    base = _quantile(inside[:, 1], LEVEL)
    threshold = float(np.quantile(inside[:, 0], LEVEL))
    pool = np.vstack([inside, outside])
    pool = pool[pool[:, 0] > threshold]
    novelty = np.sort(pool[:, 0])
    bins = max(1, len(novelty) // min_bin)
    edges = np.array([threshold, *(novelty[len(novelty) * i // bins] for i in range(1, bins)), np.inf])
    quantiles = []
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        residuals = pool[(pool[:, 0] > low) & (pool[:, 0] <= high), 1]
        quantiles.append(max(base, _quantile(residuals, LEVEL)) if len(residuals) else base)
    return base, edges, np.maximum.accumulate(quantiles)


def half_widths(calibration, novelty: np.ndarray) -> np.ndarray:
    base, edges, quantiles = calibration
    out = np.full(len(novelty), base)
    beyond = novelty > edges[0]
    index = np.clip(np.searchsorted(edges[1:-1], novelty[beyond], side="left"), 0, len(quantiles) - 1)
    out[beyond] = quantiles[index]
    return out


def _evaluate(table, x, y, features, train, test, seed: int) -> tuple[dict, np.ndarray]:
    predictor = ScorePredictor(features, PredictorConfig(seed=seed)).fit(table.iloc[train], TARGET)
    prediction = predictor.booster.predict(x[test])
    lower, upper = predictor.predict_interval(table.iloc[test])
    truth = y[test]
    params = lightgbm_params(predictor.config, features)
    calibration = novelty_interval(x[train], y[train], params, predictor.booster.current_iteration(), seed)
    novelty = Novelty(x[train]).score(x[test])
    half = half_widths(calibration, novelty)
    error = truth - prediction
    row = {
        "runs": len(test),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "within_3pp": float(np.mean(np.abs(error) <= 3)),
        "coverage": float(np.mean((truth >= lower) & (truth <= upper))),
        "width": float(np.mean(upper - lower)),
        "coverage_novelty": float(np.mean(np.abs(error) <= half)),
        "width_novelty": float(np.mean(2 * half)),
        "novelty_median": float(np.median(novelty)),
    }
    return row, novelty


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=Path("corpus/corpus.parquet"), help="corpus Parquet file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "novelty.json")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    table, _ = load_corpus(args.corpus)
    features = [name for group in ("static", "probe", "hp") for name in corpus_feature_groups()[group]]
    x, y = feature_matrix(table, features), table[TARGET].to_numpy(float)
    order = np.random.default_rng(args.seed).permutation(len(y))
    held_in = order[: int(0.28 * len(y))]
    rows = {}
    rows["in distribution (28% random)"], in_novelty = _evaluate(
        table, x, y, features, order[len(held_in) :], held_in, args.seed
    )
    families = table["family_group"].astype(str).to_numpy()
    splits = [(f"held out: {p}", table[f"data_{p}"].to_numpy() > 0) for p in PROBLEMS]
    splits += [(f"held out: family {f}", families == f) for f in sorted(set(families)) if (families == f).mean() < 0.5]
    for name, mask in splits:
        row, novelty = _evaluate(table, x, y, features, np.where(~mask)[0], np.where(mask)[0], args.seed)
        labels = np.r_[np.zeros(len(in_novelty)), np.ones(len(novelty))]
        row["novelty_auc"] = float(roc_auc_score(labels, np.r_[in_novelty, novelty]))
        rows[name] = row
        print(f"{name}: done", flush=True)
    lines = [
        "| runs judged | n | RMSE | within ±3pp | coverage (today) | width (today) | coverage (novelty) "
        "| width (novelty) | novelty AUC |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in rows.items():
        auc = f"{r['novelty_auc']:.2f}" if "novelty_auc" in r else "-"
        lines.append(
            f"| {name} | {r['runs']} | {r['rmse']:.2f} | {r['within_3pp']:.0%} | {r['coverage']:.0%} | "
            f"{r['width']:.1f} | {r['coverage_novelty']:.0%} | {r['width_novelty']:.1f} | {auc} |"
        )
    print("\n".join(lines))
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, lightgbm {lgb.__version__}",
        "date": time.strftime("%Y-%m-%d"),
        "seconds": time.perf_counter() - started,
        "level": LEVEL,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
