"""Cold start, measured: how many trained runs a new model's predictor needs, and which runs to train first.

The shipped corpus is the oracle: a run's score is revealed only when a strategy "trains" it. Per seed, 28% of
the corpus is held out (the same runs for every strategy) and the rest is the candidate pool. Every strategy
starts from the same 25 random runs and adds batches chosen from the pool by :func:`tuneahead_ray.corpus.pick_batch`,
the predictor retrained between batches, until the pool (936 runs) is used up: batches of 25 up to 400 runs, then
of 100 (the late fits are the slow ones, and the question is what the first few hundred runs buy):

* ``random``: uniform batches;
* ``uncertainty``: the widest prediction intervals;
* ``decision``: half the batch whose GO/NO-GO is least certain at the threshold (P(score >= threshold) nearest
  0.5), half the widest intervals of the rest;
* ``static-only``: the predictor on static descriptors + hyperparameters (the pre-screen groups, no probe: what a
  new model has before paying for any probe), on the same random runs as ``random``. Its 0-run point predicts
  every run at the base model's score (a fine-tune that changes nothing), so every run is NO-GO.

At checkpoints it records the held-out RMSE, the predictor's own estimate of it (cross-fitted residuals), and
the paper's go/no-go (GO when the predicted score >= the base score + ``--margin``): successes kept (share of the
held-out runs that reach the threshold which are GO) and compute saved (costs as in ``benchmarks/accuracy.py``).

The predictor is lighter than the package default so that ~400 fits per seed fit in minutes: learning rate 0.06
and early stopping after 50 rounds (default 0.03 / 100), and ``cv-normalized`` intervals (default ``cv``, whose
widths are all equal, which would make ``uncertainty`` random selection). The same settings serve every strategy.

    python benchmarks/cold_start.py [--seeds 5] [--batch 25] [--margin 1.0]   # ~15 minutes on 2 cores

Prints a markdown table and the issue's checks, writes ``benchmarks/results/cold_start.json`` and, when
matplotlib is installed, ``benchmarks/results/cold_start.png``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests._harness, benchmarks

import numpy as np
import pandas as pd

from benchmarks.accuracy import TARGET, load_corpus
from tests._harness.results import markdown_table, results_path, write_results
from tuneahead_ray.corpus import estimated_rmse, pick_batch, plateau
from tuneahead_ray.features import FEATURE_GROUPS
from tuneahead_ray.predictor import FULL_GROUPS, PRESCREEN_GROUPS, PredictorConfig, ScorePredictor, go_no_go

CHECKPOINTS = (25, 50, 100, 150, 200, 250, 300, 400, 600, 800, 1000)
STRATEGIES = ("random", "uncertainty", "decision", "static-only")
LIGHT = {"learning_rate": 0.06, "early_stopping_rounds": 50, "interval_method": "cv-normalized"}
Picker = Callable[..., np.ndarray]


def _config(seed: int) -> PredictorConfig:
    return PredictorConfig(seed=seed, **LIGHT)


def _evaluate(predictor: ScorePredictor | None, held: pd.DataFrame, threshold: float, probe_free: bool) -> dict:
    """Held-out RMSE and the paper's go/no-go figures of ``predictor`` (``None``: every run at the base score)."""
    truth = held[TARGET].to_numpy(float)
    predicted = held["base_score"].to_numpy(float) if predictor is None else predictor.predict(held)
    full = (held["train_seconds"] + held["eval_seconds"]).to_numpy(float)
    descriptors = held["descriptor_seconds"].to_numpy(float)
    probe = np.zeros(len(held)) if probe_free else held["probe_seconds"].to_numpy(float)
    if not probe_free and "dataset_probe_seconds" in held:  # each corpus run has its own dataset: it pays its own
        descriptors = descriptors + held["dataset_probe_seconds"].to_numpy(float)
    figures = go_no_go(truth, predicted, threshold, probe, full, descriptors)
    row = {
        "rmse": float(np.sqrt(np.mean((truth - predicted) ** 2))),
        "successes_kept": figures["successes_kept"],
        "failures_skipped": figures["failures_skipped"],
        "compute_saved": figures["compute_saved"],
    }
    if predictor is not None:
        row["estimated_rmse"] = estimated_rmse(predictor)
    return row


def run_strategy(
    strategy: str,
    pool: pd.DataFrame,
    held: pd.DataFrame,
    start: np.ndarray,
    features: list[str],
    *,
    threshold: float,
    seed: int,
    batch: int,
    late_batch: int,
    late_from: int,
    checkpoints: tuple[int, ...],
    picker: Picker = pick_batch,
) -> dict:
    """Train ``strategy``'s runs batch by batch from ``start``; held-out figures at each checkpoint, and the
    predictor's estimated error after every batch."""
    active = strategy in ("uncertainty", "decision")
    chosen = list(start)
    remaining = np.setdiff1d(np.arange(len(pool)), start)
    rows, estimates, step = {}, [], 0
    while True:
        n = len(chosen)
        at_checkpoint = n in checkpoints
        predictor = None
        if active or at_checkpoint:
            trained = pool.iloc[chosen]
            predictor = ScorePredictor(features, _config(seed)).fit(trained, TARGET)
            estimates.append((n, estimated_rmse(predictor)))
        if at_checkpoint:
            rows[n] = _evaluate(predictor, held, threshold, probe_free=strategy == "static-only")
        nxt = next((c for c in checkpoints if c > n), None)
        if nxt is None:
            break
        size = min(batch if n < late_from else late_batch, nxt - n)  # land on every checkpoint
        picking = "random" if strategy == "static-only" else strategy
        picked = picker(
            picking,
            pool.iloc[remaining],
            predictor if active else None,
            size,
            threshold=threshold,
            seed=seed * 1000 + step,
        )
        chosen.extend(remaining[picked].tolist())
        remaining = np.delete(remaining, picked)
        step += 1
    return {"checkpoints": rows, "estimates": estimates}


def _mean_std(values: list[float]) -> tuple[float, float]:
    array = np.asarray(values, dtype=float)
    return float(np.nanmean(array)), float(np.nanstd(array))


def summarise(per_seed: list[dict], strategies: tuple[str, ...]) -> dict:
    """Per strategy and runs trained: mean and std over seeds of every figure."""
    summary = {}
    for strategy in strategies:
        runs = sorted({n for seed in per_seed for n in seed[strategy]["checkpoints"]})
        summary[strategy] = {}
        for n in runs:
            rows = [seed[strategy]["checkpoints"][n] for seed in per_seed if n in seed[strategy]["checkpoints"]]
            summary[strategy][n] = {
                key: dict(zip(("mean", "std"), _mean_std([r[key] for r in rows]), strict=True)) for key in rows[0]
            }
    return summary


def runs_to_reach(curve: dict[int, dict], target: float) -> int | None:
    """Fewest runs trained at which the mean held-out RMSE is at most ``target`` (checkpoints only)."""
    return next((n for n in sorted(curve) if curve[n]["rmse"]["mean"] <= target), None)


def checks(summary: dict, reference: int = 400, within: int = 250) -> dict:
    """The issue's must-show: the decision strategy reaches random selection's RMSE at ``reference`` runs with at
    most ``within`` runs, and keeps more successes than random at equal runs."""
    random, decision = summary["random"], summary["decision"]
    target = random[reference]["rmse"]["mean"]
    needed = runs_to_reach(decision, target)
    equal = sorted(set(random) & set(decision))
    kept = {n: (decision[n]["successes_kept"]["mean"], random[n]["successes_kept"]["mean"]) for n in equal}
    return {
        "random_rmse_at_reference": target,
        "reference_runs": reference,
        "decision_runs_to_reach": needed,
        "decision_reaches_within": needed is not None and needed <= within,
        "within_runs": within,
        "successes_kept_decision_vs_random": kept,
        "decision_keeps_more_at": [n for n, (d, r) in kept.items() if d > r],
        "decision_keeps_fewer_or_equal_at": [n for n, (d, r) in kept.items() if d <= r],
    }


def table(summary: dict, strategies: tuple[str, ...]) -> str:
    def cell(figure: dict | None, key: str) -> str | None:
        if figure is None:
            return None
        return f"{figure['mean']:.2f} ± {figure['std']:.2f}" if key == "rmse" else f"{figure['mean']:.0%}"

    rows = []
    for n in sorted({n for s in strategies for n in summary[s]}):
        row: dict[str, object] = {"runs": n}
        for key, label in (("rmse", "RMSE"), ("successes_kept", "kept")):
            row.update({f"{s} {label}": cell(summary[s].get(n, {}).get(key), key) for s in strategies})
        rows.append(row)
    return markdown_table(rows, right=rows[0] if rows else ())


def plot(summary: dict, strategies: tuple[str, ...], path: Path) -> bool:
    """RMSE and successes kept against runs trained; ``False`` when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for s in strategies:
        runs = sorted(summary[s])
        for axis, key in ((left, "rmse"), (right, "successes_kept")):
            mean = np.array([summary[s][n][key]["mean"] for n in runs])
            std = np.array([summary[s][n][key]["std"] for n in runs])
            axis.plot(runs, mean, marker="o", markersize=3, label=s)
            axis.fill_between(runs, mean - std, mean + std, alpha=0.15)
    left.set(xlabel="runs trained", ylabel="held-out RMSE (pp)", title="predictor error")
    right.set(xlabel="runs trained", ylabel="successes kept", title="go/no-go at base + margin")
    for axis in (left, right):
        axis.grid(alpha=0.3)
    left.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


def main(argv: list[str] | None = None, picker: Picker = pick_batch) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=Path("corpus/corpus.parquet"), help="corpus Parquet file")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=25, help="runs added per batch (default 25)")
    parser.add_argument("--late-batch", type=int, default=100, help="runs per batch from --late-from on (100)")
    parser.add_argument("--late-from", type=int, default=400, help="runs trained when batches grow (400)")
    parser.add_argument("--start", type=int, default=25, help="random runs trained first (default 25)")
    parser.add_argument("--margin", type=float, default=1.0, help="go/no-go threshold above the base score (pp)")
    parser.add_argument("--max-runs", type=int, default=1000, help="stop after this many runs (default 1000)")
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    parser.add_argument("--out", type=Path, default=results_path("cold_start"))
    args = parser.parse_args(argv)
    started = time.perf_counter()
    corpus, source = load_corpus(args.corpus)
    threshold = float(corpus["base_score"].median()) + args.margin
    # The default predictors' feature groups: the full one (with both probes) and the probe-free pre-screen one.
    full = [name for group in FULL_GROUPS for name in FEATURE_GROUPS[group]]
    static = [name for group in PRESCREEN_GROUPS for name in FEATURE_GROUPS[group]]
    strategies = tuple(args.strategies)
    per_seed = []
    for seed in range(args.seeds):
        order = np.random.default_rng(seed).permutation(len(corpus))
        held_count = int(0.28 * len(corpus))
        held, pool = corpus.iloc[order[:held_count]], corpus.iloc[order[held_count:]]
        start = np.random.default_rng(seed + 10_000).choice(len(pool), size=args.start, replace=False)
        last = min(args.max_runs, len(pool))
        checkpoints = tuple(c for c in CHECKPOINTS if args.start <= c < last) + (last,)
        results = {}
        for strategy in strategies:
            began = time.perf_counter()
            results[strategy] = run_strategy(
                strategy,
                pool,
                held,
                start,
                static if strategy == "static-only" else full,
                threshold=threshold,
                seed=seed,
                batch=args.batch,
                late_batch=args.late_batch,
                late_from=args.late_from,
                checkpoints=checkpoints,
                picker=picker,
            )
            print(f"seed {seed} {strategy}: {time.perf_counter() - began:.0f} s", flush=True)
        if "static-only" in results:
            results["static-only"]["checkpoints"][0] = _evaluate(None, held, threshold, probe_free=True)
        per_seed.append(results)
    summary = summarise(per_seed, strategies)
    seconds = time.perf_counter() - started

    print(f"\n### held-out RMSE (pp, mean ± std over {args.seeds} seeds) and successes kept at {threshold:.3f}\n")
    print(table(summary, strategies))
    verdict = None
    if {"random", "decision"} <= set(strategies) and 400 in summary["random"]:
        verdict = checks(summary)
        needed = verdict["decision_runs_to_reach"]
        print(
            f"\nrandom selection's RMSE at 400 runs: {verdict['random_rmse_at_reference']:.2f} pp; decision reaches "
            f"it at {needed if needed is not None else 'no checkpoint'} runs "
            f"({'met' if verdict['decision_reaches_within'] else 'missed'}: <= 250)"
        )
        kept = verdict["successes_kept_decision_vs_random"]
        print(
            "successes kept, decision vs random: "
            + ", ".join(f"{n}: {d:.0%} vs {r:.0%}" for n, (d, r) in kept.items())
            + f"\ndecision keeps more at {verdict['decision_keeps_more_at']}, "
            f"not more at {verdict['decision_keeps_fewer_or_equal_at']}"
        )
    stops = {}
    for strategy in strategies:
        per = []
        for seed in per_seed:
            runs, errors = zip(*seed[strategy]["estimates"], strict=True)
            index = plateau(runs, errors)
            per.append(None if index is None else runs[index])
        stops[strategy] = per
    print("plateau of the estimated error (runs, per seed): " + "; ".join(f"{s}: {v}" for s, v in stops.items()))

    args.out.parent.mkdir(parents=True, exist_ok=True)
    png = args.out.with_suffix(".png")
    plotted = plot(summary, strategies, png)
    report = {
        "seconds": seconds,
        "corpus": str(source),
        "rows": len(corpus),
        "settings": {
            "seeds": args.seeds,
            "held_out_share": 0.28,
            "start": args.start,
            "batch": args.batch,
            "late_batch": args.late_batch,
            "late_from": args.late_from,
            "threshold": threshold,
            "margin": args.margin,
            "predictor": _config(0).model_dump(exclude={"seed"}),
            "static_only_features": "static + hp",
            "zero_runs": "every held-out run predicted at its base score (all NO-GO)",
        },
        "summary": {s: {str(n): v for n, v in rows.items()} for s, rows in summary.items()},
        "checks": verdict,
        "plateau_runs": stops,
        "estimates": [{s: seed[s]["estimates"] for s in strategies} for seed in per_seed],
        "plot": str(png) if plotted else "not written: matplotlib is not installed",
    }
    write_results("cold_start", report, args, args.out)
    print(f"wrote {args.out}" + (f" and {png}" if plotted else " (no plot: matplotlib is not installed)"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
