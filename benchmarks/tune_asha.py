"""Ray Tune's ASHA alone vs ASHA + TuneAheadScheduler at equal compute, replaying held-out corpus runs.

For each seed, TuneAhead is trained on 72% of the corpus (as ``benchmarks/screening.py``) and the other 28% are
replayed as Tune trials in a seeded random order, ``--concurrency`` at a time: every running trial reports its next
step's recorded training loss (``step`` as time attribute) to the real scheduler, which may stop it; a stopped or
finished trial's slot goes to the next trial. The schedulers are the real Ray Tune classes:
``AsyncHyperBandScheduler`` (grace period = the median probe length, reduction factor 3, metric = loss, as in
``benchmarks/screening.py``) alone, and :class:`tuneahead_ray.tune.TuneAheadScheduler` (``threshold`` policy)
wrapping the same ASHA, fed each run's real feature row on the result of its last probe step, with ASHA free to
stop GO trials later and with GO trials shielded from it (``shield_go``); and, for reference, the same scheduler
over FIFO (no ASHA).

Compute is measured seconds, as in ``benchmarks/screening.py``: a training step costs the run's train seconds per
step; a finished run also pays its evaluation. Under TuneAhead a trial also pays its descriptors at its start
(every trial, though the trainable computes them once per dataset) and its probe's own measured seconds for its
first K steps instead of K plain steps. Equal compute: all get the same budget, a share of what ASHA alone spends
on every held-out trial; once a step (or an evaluation) no longer fits, the replay ends. A success is a trial that
ran to the end within the budget and whose true score reaches the base model's score + ``--margin`` pp (also the
scheduler's threshold).

    python benchmarks/tune_asha.py [--seeds 5] [--margin 1.0] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests._harness, benchmarks

import numpy as np
import pandas as pd
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

from benchmarks.screening import CORPUS, costs
from tests._harness.results import markdown_table, results_path, write_results
from tuneahead_ray.predictor import TuneAhead, evaluation_splits, load_metadataset
from tuneahead_ray.tune import FEATURES_KEY, TuneAheadScheduler

SHARES = (0.25, 0.5, 1.0)
NAMES = ("ASHA alone", "ASHA + TuneAhead", "ASHA + TuneAhead, GO shielded", "TuneAhead alone (FIFO)")


def replay(
    held: pd.DataFrame,
    order: np.ndarray,
    budget: float,
    scheduler: TrialScheduler,
    concurrency: int,
    rows: list[dict] | None = None,
) -> dict:
    """Run the held-out trials in ``order`` through ``scheduler`` within ``budget`` seconds; ``rows``: each run's
    feature row, reported on its last probe step (TuneAhead)."""
    cost = costs(held)
    curves = [np.asarray(c, dtype=float) for c in held["loss_curve"]]
    lengths = np.array([len(c) for c in curves])
    probe = np.minimum(held["probe_steps"].to_numpy(int), lengths)
    max_t = int(lengths.max())
    trials = [SimpleNamespace(trial_id=str(i)) for i in range(len(held))]
    queue, running = list(order), []
    ran, finished, started = np.zeros(len(held), int), np.zeros(len(held), bool), np.zeros(len(held), bool)
    spent = 0.0

    def charge(seconds: float) -> bool:
        nonlocal spent
        if spent + seconds > budget:
            return False
        spent += seconds
        return True

    def fill() -> bool:
        while len(running) < concurrency and queue:
            i = queue.pop(0)
            if rows is not None and not charge(float(cost["overhead"][i])):
                return False
            scheduler.on_trial_add(None, trials[i])
            running.append(i)
            started[i] = True
        return True

    alive = fill()
    while alive and running:
        for i in list(running):
            step = ran[i] + 1
            screened = rows is not None and step <= probe[i]
            if not charge(float(cost["probe"][i] / probe[i] if screened else cost["step"][i])):
                alive = False
                break
            ran[i] = step
            loss = curves[i][step - 1]
            result = {"step": step, "loss": float(loss) if np.isfinite(loss) else 1e9}
            if rows is not None and step == probe[i]:
                result[FEATURES_KEY] = rows[i]
            decision = scheduler.on_trial_result(None, trials[i], result)
            over = step >= lengths[i]
            if over and (decision != TrialScheduler.STOP or step >= max_t):
                if not charge(float(cost["eval"][i])):
                    alive = False
                    break
                finished[i] = True
            if over or decision == TrialScheduler.STOP:
                scheduler.on_trial_complete(None, trials[i], result)
                running.remove(i)
        alive = alive and fill()
    return {"started": started, "finished": finished, "spent": spent}


def asha(held: pd.DataFrame, seed: int) -> AsyncHyperBandScheduler:
    np.random.seed(seed)  # ASHA draws brackets with numpy's global generator
    return AsyncHyperBandScheduler(
        time_attr="step", metric="loss", mode="min", grace_period=int(np.median(held["probe_steps"])),
        reduction_factor=3, max_t=int(held["loss_curve"].map(len).max()),
    )  # fmt: skip


def compare_split(table: pd.DataFrame, train: np.ndarray, test: np.ndarray, args: argparse.Namespace, seed: int):
    model = TuneAhead().fit(table.iloc[train], "score")
    held = table.iloc[test].reset_index(drop=True)
    threshold = float(held["base_score"].iloc[0]) + args.margin
    success = held["score"].to_numpy(float) >= threshold
    rows = held.drop(columns=["loss_curve", "per_family"]).to_dict("records")
    order = np.random.default_rng(seed).permutation(len(held))
    everything = replay(held, order, np.inf, asha(held, seed), args.concurrency)["spent"]
    per_share = {}
    for share in SHARES:
        budget = share * everything
        outcomes = {
            NAMES[0]: replay(held, order, budget, asha(held, seed), args.concurrency),
            NAMES[1]: replay(
                held, order, budget, TuneAheadScheduler(model, threshold=threshold, base=asha(held, seed)),
                args.concurrency, rows,
            ),
            NAMES[2]: replay(
                held, order, budget,
                TuneAheadScheduler(model, threshold=threshold, base=asha(held, seed), shield_go=True),
                args.concurrency, rows,
            ),
            NAMES[3]: replay(
                held, order, budget, TuneAheadScheduler(model, threshold=threshold, base=FIFOScheduler()),
                args.concurrency, rows,
            ),
        }  # fmt: skip
        per_share[str(share)] = {
            name: {
                "started": int(o["started"].sum()),
                "finished": int(o["finished"].sum()),
                "successes": int((o["finished"] & success).sum()),
                "successes_share": float((o["finished"] & success).sum() / max(success.sum(), 1)),
                "compute_used": o["spent"] / budget,
            }
            for name, o in outcomes.items()
        }
    return {"runs": len(held), "successes": int(success.sum()), "threshold": threshold,
            "asha_all_seconds": everything, "shares": per_share}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--margin", type=float, default=1.0, help="success: score >= base score + margin (pp)")
    parser.add_argument("--concurrency", type=int, default=8, help="trials running at once")
    parser.add_argument("--out", type=Path, default=results_path("tune_asha"))
    args = parser.parse_args()
    table = load_metadataset(args.corpus, "score")
    splits = [evaluation_splits(len(table), 1, 0.28, seed)[0] for seed in range(args.seeds)]
    per_seed = [compare_split(table, train, test, args, seed) for seed, (train, test) in enumerate(splits)]
    keys = ("started", "finished", "successes", "successes_share", "compute_used")
    shares = [str(share) for share in SHARES]

    def mean_of(share: str, name: str, key: str) -> float:
        return float(np.mean([s["shares"][share][name][key] for s in per_seed]))

    mean = {share: {name: {key: mean_of(share, name, key) for key in keys} for name in NAMES} for share in shares}
    wins = {
        name: {
            share: sum(s["shares"][share][name]["successes"] >= s["shares"][share][NAMES[0]]["successes"]
                       for s in per_seed)
            for share in shares
        }
        for name in NAMES[1:3]
    }  # fmt: skip
    print(f"held-out runs per seed: {per_seed[0]['runs']} ({np.mean([s['successes'] for s in per_seed]):.1f} "
          f"successes), {args.seeds} seeds (means), {args.concurrency} trials at once\n")  # fmt: skip
    rows = [
        {
            "compute budget": f"{100 * float(share):.0f}% of ASHA on all",
            "scheduler": name,
            "trials started": f"{mean[share][name]['started']:.1f}",
            "trials finished": f"{mean[share][name]['finished']:.1f}",
            "successes": f"{mean[share][name]['successes']:.1f}",
            "of all successes": f"{100 * mean[share][name]['successes_share']:.1f}%",
            "budget used": f"{100 * mean[share][name]['compute_used']:.1f}%",
            "seeds with >= ASHA's successes": f"{wins[name][share]}/{args.seeds}" if name in wins else "",
        }
        for share in shares
        for name in NAMES
    ]
    print(markdown_table(rows))
    targets = {
        f"{name} keeps >= ASHA's successes at {100 * float(share):.0f}% (mean)": (
            mean[share][name]["successes"] >= mean[share][NAMES[0]]["successes"]
        )
        for name in NAMES[1:3]
        for share in shares
    }
    print("\n" + "\n".join(f"{'met' if ok else 'MISSED'}: {name}" for name, ok in targets.items()))
    payload = {
        "corpus": str(args.corpus.name),
        "seeds": args.seeds,
        "margin": args.margin,
        "concurrency": args.concurrency,
        "mean": mean,
        "seeds_with_at_least_asha_successes": wins,
        "per_seed": per_seed,
        "targets": targets,
    }
    write_results("tune_asha", payload, args, args.out)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
