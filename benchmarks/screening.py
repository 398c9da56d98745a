"""Screening policies on held-out corpus runs vs Ray Tune's ASHA, random selection and training everything; and
the scheduler's speed on 100,000 and 1,000,000 candidates.

For each seed, TuneAhead is trained on 72% of the corpus and screens the other 28%. A success is a held-out run
whose true score reaches the threshold (default: the base model's score + 1pp). Costs are measured seconds, as in
``benchmarks/accuracy.py``: a full run costs ``train_seconds + eval_seconds``; screening charges every run its
descriptors, its dataset's standardized probe (once per dataset: each corpus run has its own) and its probe, which a
GO run continues from (it pays the rest of the full run). The paper's operating point is the target: the threshold
rule saves >= 58.4% of the compute net while keeping >= 90% of the successes; a miss prints by how much.

* ``threshold`` is the paper's rule: GO when the predicted score clears the threshold.
* ASHA is Ray Tune's ``AsyncHyperBandScheduler`` (grace period = the median probe length, reduction factor 3,
  metric = training loss) fed every run's recorded loss curve step by step, as if all ran in parallel; a run it
  stops costs the steps it ran, a run it lets finish costs the full run.
* ``expected_gain``, ``success_probability``, ``top_k``, random and the oracle (true scores) all get ASHA's total
  compute ("at equal compute"): the budgeted policies as their GO budget after the probes are paid.

    python benchmarks/screening.py [--seeds 5] [--margin 1.0]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests._harness, benchmarks

import numpy as np
import pandas as pd

from benchmarks.accuracy import load_corpus
from tests._harness.results import markdown_table, results_path, write_results
from tuneahead_ray.predictor import FeatureGroupModel, TuneAhead, evaluation_splits
from tuneahead_ray.screening import select

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "corpus.parquet"


class ProbeFree(FeatureGroupModel):
    """The pre-screen model of ``probe_budget``: static descriptors + hyperparameters, no probe."""

    groups = ("static", "hp")


def costs(table: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per run: full-run cost, probe cost, descriptor cost, per-step training cost (seconds)."""
    steps = table["loss_curve"].map(len).to_numpy(float)
    train = table["train_seconds"].to_numpy(float)
    dataset_probe = table["dataset_probe_seconds"].to_numpy(float) if "dataset_probe_seconds" in table else 0.0
    return {
        "full": train + table["eval_seconds"].to_numpy(float),
        "probe": table["probe_seconds"].to_numpy(float),
        "overhead": table["descriptor_seconds"].to_numpy(float) + dataset_probe,
        "step": train / np.maximum(steps, 1),
        "eval": table["eval_seconds"].to_numpy(float),
    }


def asha(table: pd.DataFrame, cost: dict[str, np.ndarray], grace: int, seed: int) -> tuple[np.ndarray, float]:
    """Ray Tune's ASHA over the recorded loss curves: which runs finish, and the compute it spends."""
    from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

    np.random.seed(seed)  # ASHA draws brackets with numpy's global generator
    curves = [np.asarray(c, dtype=float) for c in table["loss_curve"]]
    lengths = np.array([len(c) for c in curves])
    scheduler = AsyncHyperBandScheduler(
        time_attr="step", metric="loss", mode="min", grace_period=grace, reduction_factor=3, max_t=int(lengths.max())
    )
    trials = [SimpleNamespace(trial_id=str(i)) for i in range(len(curves))]
    for trial in trials:
        scheduler.on_trial_add(None, trial)
    ran = np.zeros(len(curves), dtype=int)
    alive = set(range(len(curves)))
    for step in range(1, int(lengths.max()) + 1):
        for i in sorted(alive):
            if step > lengths[i]:
                alive.discard(i)
                continue
            ran[i] = step
            loss = curves[i][step - 1]
            loss = loss if np.isfinite(loss) else 1e9
            if scheduler.on_trial_result(None, trials[i], {"step": step, "loss": loss}) == TrialScheduler.STOP:
                alive.discard(i)
    finished = ran >= lengths
    spent = float((ran * cost["step"]).sum() + cost["eval"][finished].sum())
    return finished, spent


def outcome(go: np.ndarray, success: np.ndarray, spent: float, everything: float) -> dict[str, float]:
    return {
        "go": int(go.sum()),
        "successes_kept": float(go[success].mean()) if success.any() else float("nan"),
        "failures_skipped": float((~go[~success]).mean()) if (~success).any() else float("nan"),
        "compute_share": spent / everything,
        "compute_saved": 1.0 - spent / everything,
    }


def screen_split(table: pd.DataFrame, train: np.ndarray, test: np.ndarray, margin: float, seed: int) -> dict:
    model = TuneAhead().fit(table.iloc[train], "score")
    held = table.iloc[test].reset_index(drop=True)
    lower, upper = model.predict_interval(held)
    predicted = (lower + upper) / 2
    threshold = float(held["base_score"].iloc[0]) + margin
    success = held["score"].to_numpy(float) >= threshold
    cost = costs(held)
    everything = float(cost["full"].sum())
    screening = float(cost["probe"].sum() + cost["overhead"].sum())
    remaining = np.maximum(cost["full"] - cost["probe"], 0.0)

    def screened(go: np.ndarray) -> dict[str, float]:
        return outcome(go, success, screening + float(remaining[go].sum()), everything)

    results = {"train everything": outcome(np.ones(len(held), bool), success, everything, everything)}
    results["threshold (paper rule)"] = screened(predicted >= threshold)
    # The rule's ceiling: perfect predictions still pay every probe, descriptor and dataset probe.
    results["threshold, perfect predictions"] = screened(held["score"].to_numpy(float) >= threshold)
    finished, asha_spent = asha(held, cost, int(np.median(held["probe_steps"])), seed)
    results["ASHA (Ray Tune)"] = outcome(finished, success, asha_spent, everything)
    go_budget = max(asha_spent - screening, 0.0)
    for policy in ("expected_gain", "success_probability"):
        selection = select(
            predicted, remaining, policy=policy, threshold=threshold, base_score=threshold - margin,
            budget=go_budget, lower=lower, upper=upper,
        )  # fmt: skip
        results[f"{policy} @ ASHA compute"] = screened(selection.go)
    # Multi-fidelity (probe_budget): a probe-free model picks the third most in contention; only those are probed.
    pre_lower, pre_upper = ProbeFree().fit(table.iloc[train], "score").predict_interval(held)
    contention = np.argsort(-pre_upper, kind="stable")[: len(held) // 3]
    probed = np.isin(np.arange(len(held)), contention)
    partial = float(cost["probe"][probed].sum() + cost["overhead"].sum())
    selection = select(
        np.where(probed, predicted, -np.inf), remaining, policy="expected_gain", base_score=threshold - margin,
        budget=max(asha_spent - partial, 0.0),
    )  # fmt: skip
    results["expected_gain + probe_budget 1/3 @ ASHA compute"] = outcome(
        selection.go, success, partial + float(remaining[selection.go].sum()), everything
    )
    order = np.argsort(-predicted, kind="stable")
    k = int(np.searchsorted(np.cumsum(remaining[order]), go_budget, side="right"))
    results["top_k @ ASHA compute"] = screened(np.isin(np.arange(len(held)), order[:k]))
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(50):
        shuffled = rng.permutation(len(held))
        take = shuffled[: int(np.searchsorted(np.cumsum(cost["full"][shuffled]), asha_spent, side="right"))]
        go = np.isin(np.arange(len(held)), take)
        draws.append(outcome(go, success, float(cost["full"][go].sum()), everything))
    results["random @ ASHA compute"] = {key: float(np.mean([d[key] for d in draws])) for key in draws[0]}
    truth = held["score"].to_numpy(float)
    oracle = select(truth, remaining, policy="success_probability", threshold=threshold, budget=go_budget,
                    lower=truth - 1e-6, upper=truth + 1e-6)  # fmt: skip
    results["oracle @ ASHA compute"] = screened(oracle.go)
    for row in results.values():
        row["successes"] = int(success.sum())
    return {"threshold": threshold, "runs": len(held), "screening_share": screening / everything, "policies": results}


def scheduler_speed(sizes: tuple[int, ...] = (100_000, 1_000_000)) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for n in sizes:
        predicted = rng.normal(45, 10, n)
        cost = rng.lognormal(0, 1, n)
        half = rng.uniform(2, 8, n)
        for policy in ("threshold", "top_k", "expected_gain", "success_probability"):
            started = time.perf_counter()
            select(predicted, cost, policy=policy, threshold=50, base_score=45, budget=cost.sum() * 0.2, k=n // 10,
                   lower=predicted - half, upper=predicted + half)  # fmt: skip
            rows.append({"candidates": n, "policy": policy, "seconds": time.perf_counter() - started})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--margin", type=float, default=1.0, help="success: score >= base score + margin (pp)")
    parser.add_argument("--out", type=Path, default=results_path("screening"))
    args = parser.parse_args()
    table, source = load_corpus(args.corpus)
    print(f"corpus: {source}: {len(table)} runs")
    splits = [evaluation_splits(len(table), 1, 0.28, seed)[0] for seed in range(args.seeds)]
    per_seed = [screen_split(table, train, test, args.margin, seed) for seed, (train, test) in enumerate(splits)]
    policies = list(per_seed[0]["policies"])
    keys = ("successes_kept", "failures_skipped", "compute_saved", "compute_share", "go", "successes")
    mean = {p: {k: float(np.mean([s["policies"][p][k] for s in per_seed])) for k in keys} for p in policies}
    share = float(np.mean([s["screening_share"] for s in per_seed]))
    print(f"held-out runs per seed: {per_seed[0]['runs']}, threshold {per_seed[0]['threshold']:.2f}, "
          f"{args.seeds} seeds (means); screening every run (descriptors, dataset probe, probe) costs "
          f"{100 * share:.1f}% of training them all\n")  # fmt: skip
    columns = {
        "successes kept": "successes_kept",
        "failures skipped": "failures_skipped",
        "compute spent": "compute_share",
        "net compute saved": "compute_saved",
    }
    print(
        markdown_table(
            {"policy": name, "GO runs": f"{row['go']:.1f}"} | {k: f"{100 * row[v]:.1f}%" for k, v in columns.items()}
            for name, row in mean.items()
        )
    )
    speed = scheduler_speed()
    print()
    print(
        markdown_table(
            {"candidates": f"{r['candidates']:,}", "policy": r["policy"], "seconds": f"{r['seconds']:.3f}"}
            for r in speed
        )
    )
    rule, ceiling = mean["threshold (paper rule)"], mean["threshold, perfect predictions"]
    print(
        f"\nthreshold rule: {100 * rule['compute_saved']:.1f}% saved (target >= 58.4%: "
        f"{100 * (rule['compute_saved'] - 0.584):+.1f} pp), {100 * rule['successes_kept']:.1f}% of successes kept "
        f"(target >= 90%: {100 * (rule['successes_kept'] - 0.90):+.1f} pp); with perfect predictions it would save "
        f"{100 * ceiling['compute_saved']:.1f}% keeping all"
    )
    targets = {
        "threshold: compute saved >= 58.4%": rule["compute_saved"] >= 0.584,
        "threshold: successes kept >= 90%": rule["successes_kept"] >= 0.90,
        "best policy beats ASHA at equal compute": max(
            mean[f"{p} @ ASHA compute"]["successes_kept"]
            for p in ("expected_gain", "success_probability", "top_k", "expected_gain + probe_budget 1/3")
        )
        > mean["ASHA (Ray Tune)"]["successes_kept"],
        "100k candidates <= 1 s": max(r["seconds"] for r in speed if r["candidates"] == 100_000) <= 1.0,
        "1M candidates <= 10 s": max(r["seconds"] for r in speed if r["candidates"] == 1_000_000) <= 10.0,
    }
    print("\n" + "\n".join(f"{'met' if ok else 'MISSED'}: {name}" for name, ok in targets.items()))
    payload = {
        "corpus": str(source),
        "seeds": args.seeds,
        "margin": args.margin,
        "mean": mean,
        "per_seed": per_seed,
        "screening_share": share,
        "scheduler_speed": speed,
        "targets": targets,
    }
    write_results("screening", payload, args, args.out)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
