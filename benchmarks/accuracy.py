"""Accuracy of TuneAhead vs the paper's baselines on the corpus of completed runs, on identical held-out splits.

Random splits (28% held out, one per seed) and family-held-out splits (``family_group``: whole task families
unseen in training, with the interval calibrated on grouped inner folds): RMSE (pp), RMSE / target std, R²,
within ±3pp and interval coverage per model, RMSE ratios vs the early-stop and ProxyLM baselines, and go/no-go
figures at a threshold (default: the base model's score + 1pp, i.e. a success improves the base model by at least
1pp) on the random splits' held-out runs.

Costs of the go/no-go figures are measured seconds. A full run costs ``train_seconds + eval_seconds``. Screening
charges every run what its screen needs: TuneAhead the probe (the run's first K steps, which a GO run continues
from) and the descriptors; DynamicOnly and early stop the probe; ProxyLM the proxy fine-tune and the descriptors,
neither reusable by the full run; the oracle (true scores) nothing.

Reads ``--corpus`` (default ``corpus/corpus.parquet``) or, while the corpus is still being built, its fresher
``.jsonl`` checkpoint. Prints markdown tables and writes ``benchmarks/results/accuracy.json``. Targets (issue 17):
TuneAhead's RMSE <= 0.85x ProxyLM's (default proxy) on random and family-held-out splits, <= 2x the seed-noise
floor of the corpus's benchmark, >= 3x lower than early stop; 90% intervals covering 88-92%. ``StrongProxyLM`` (the
strong proxy) is reported beside them where the corpus has it.

    python benchmarks/accuracy.py [--corpus corpus/corpus.parquet] [--seeds 5] [--margin 1.0] [--n-jobs 1]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests._harness, benchmarks

import numpy as np
import pandas as pd

from tests._harness.results import markdown_table, read_figures, results_path, write_results
from tuneahead_ray.predictor import PredictorConfig, corpus_models, cross_validate, go_no_go, load_metadataset

TARGET = "score"
GROUP = "family_group"


def load_corpus(path: Path) -> tuple[pd.DataFrame, Path]:
    """The corpus table: the Parquet file, or its JSONL checkpoint when the Parquet file is absent or older (the
    builder rewrites the Parquet file only every 50 runs; the checkpoint has every finished run)."""
    checkpoint = path.with_name(path.name + ".jsonl")
    fresher = checkpoint.exists() and (not path.exists() or checkpoint.stat().st_mtime > path.stat().st_mtime)
    source = checkpoint if fresher else path
    return load_metadataset(source, TARGET), source


def _percent(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.1f}%"


def accuracy_table(report: dict) -> str:
    """One row per model, mean over splits (± std for RMSE)."""
    rows = []
    for name, mean in report["mean"].items():
        rows.append(
            {
                "model": name,
                "RMSE (pp)": f"{mean['rmse']:.2f} ± {report['std'][name]['rmse']:.2f}",
                "RMSE / std": f"{mean['rmse_over_std']:.3f}",
                "R²": f"{mean['r2']:.3f}",
                "within ±3pp": _percent(mean["within_3pp"]),
                "coverage": _percent(mean.get("coverage", math.nan)),
                "interval width (pp)": f"{mean['interval_width']:.2f}" if "interval_width" in mean else "n/a",
            }
        )
    return markdown_table(rows)


def rmse_ratios(report: dict) -> dict[str, float]:
    """How many times lower TuneAhead's mean RMSE is than each other model's."""
    ours = report["mean"]["TuneAhead"]["rmse"]
    return {name: mean["rmse"] / ours for name, mean in report["mean"].items() if name != "TuneAhead"}


def screening_costs(table: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per screen: (cost a GO run reuses, cost it cannot) per run, in seconds; "Oracle" screens for free.

    The dataset's standardized probe is charged once per dataset: every corpus run has its own dataset, so each
    run pays its own (a grid with several candidates per dataset shares it, see ``benchmarks/screening.py``).
    """
    none = np.zeros(len(table))

    def seconds(column: str) -> np.ndarray:
        return table[column].to_numpy(dtype=float) if column in table else none

    probe, descriptors, dataset_probe = (
        seconds("probe_seconds"),
        seconds("descriptor_seconds"),
        seconds("dataset_probe_seconds"),
    )
    costs = {
        "TuneAhead": (probe, descriptors + dataset_probe),
        "ProxyLM": (none, seconds("proxy_seconds") + descriptors),
        "StrongProxyLM": (none, seconds("strong_proxy_seconds") + descriptors),
        "DynamicOnly": (probe, dataset_probe),
        "EarlyStopExtrapolation": (probe, none),
        "Oracle": (none, none),
    }
    if "strong_proxy_seconds" not in table:
        del costs["StrongProxyLM"]
    return costs


def screening(table: pd.DataFrame, report: dict, threshold: float) -> dict[str, dict[str, float]]:
    """Go/no-go figures per screen, averaged over the held-out splits."""
    full = (table["train_seconds"] + table["eval_seconds"]).to_numpy(dtype=float)
    costs = screening_costs(table)
    figures: dict[str, list[dict[str, float]]] = {}
    for split in report["per_split"]:
        rows, y_true = np.array(split["test_rows"]), np.array(split["y_true"])
        decisions = {**split["predictions"], "Oracle": y_true}
        for name, (reused, overhead) in costs.items():
            figures.setdefault(name, []).append(
                go_no_go(y_true, np.asarray(decisions[name]), threshold, reused[rows], full[rows], overhead[rows])
            )
    return {name: pd.DataFrame(rows).mean().to_dict() for name, rows in figures.items()}


def screening_table(figures: dict[str, dict[str, float]]) -> str:
    columns = {
        "GO share": "go_share",
        "successes kept": "successes_kept",
        "failures skipped": "failures_skipped",
        "compute saved": "compute_saved",
    }
    return markdown_table(
        [{"screen": name, **{k: _percent(row[v]) for k, v in columns.items()}} for name, row in figures.items()]
    )


def target_checks(random: dict, family: dict, floor: dict | None) -> dict[str, bool]:
    """The targets of the accuracy study: on random splits and with families held out, TuneAhead's RMSE at most
    0.85x the ProxyLM-style baseline's; on random splits at most twice the seed-noise floor, at least 3x lower than
    early-stop extrapolation, and 90% intervals covering 88-92%."""
    ours = random["mean"]["TuneAhead"]
    checks = {
        "rmse <= 0.85x ProxyLM (random)": 1 / rmse_ratios(random)["ProxyLM"] <= 0.85,
        "rmse <= 0.85x ProxyLM (families held out)": 1 / rmse_ratios(family)["ProxyLM"] <= 0.85,
        "rmse >= 3x better than early stop": rmse_ratios(random)["EarlyStopExtrapolation"] >= 3.0,
        "coverage in 88-92%": 0.88 <= ours["coverage"] <= 0.92,
    }
    if floor is not None:
        checks["rmse <= 2x seed-noise floor"] = ours["rmse"] <= 2 * floor["seed_std_pp"]
    return checks


def corpus_benchmark_items(table: pd.DataFrame) -> int:
    """The size of the benchmark a corpus was scored on (480 for corpora built before the column was stored); a
    corpus whose runs were scored on several sizes is an error."""
    if "benchmark_items" not in table:
        return 480
    sizes = table["benchmark_items"].unique()
    if len(sizes) != 1 or pd.isna(sizes[0]):
        raise ValueError(f"the corpus mixes benchmark sizes {sorted(map(str, sizes))}: its scores are not comparable")
    return int(sizes[0])


def noise_floor(target_std: float, benchmark_items: int, path: Path | None = None) -> dict | None:
    """The ground truth's seed noise on a benchmark of ``benchmark_items`` items (``benchmarks/noise_floor.py``'s
    results at ``path``, default ``benchmarks/results/noise_floor.json``), as the RMSE and RMSE / std no predictor
    of the candidate can beat on average, when that benchmark has measured it."""
    default = results_path("noise_floor")
    path = path or default
    if not path.exists():
        if path != default:
            raise FileNotFoundError(f"--floor: {path} does not exist (run benchmarks/noise_floor.py --out {path})")
        return None
    figures = read_figures(path)
    floor = figures.get("by_benchmark_items", {}).get(str(benchmark_items))
    if floor is None and benchmark_items == 480 and "seed_std_pp" in figures:
        floor = figures  # the first noise-floor results: one 480-item benchmark, no breakdown by size
    if floor is None:
        return None
    return {
        "benchmark_items": benchmark_items,
        "seed_std_pp": floor["seed_std_pp"],
        "rmse_over_std_floor": floor["seed_std_pp"] / target_std,
        "within_3pp_ceiling": floor["within_3pp_ceiling"],
        "candidates": floor["candidates"],
    }


def _summary(report: dict) -> dict:
    """The report without per-run predictions (kept small for the results file)."""
    keep = ("split", "n_train", "n_test", "models")
    return {**report, "per_split": [{k: split[k] for k in keep} for split in report["per_split"]]}


def add_split_arguments(parser: argparse.ArgumentParser) -> None:
    """The corpus, the random held-out splits and the LightGBM threads (shared with accuracy_ceiling.py)."""
    parser.add_argument("--corpus", type=Path, default=Path("corpus/corpus.parquet"), help="corpus Parquet file")
    parser.add_argument("--seeds", type=int, default=5, help="random held-out splits (default 5)")
    parser.add_argument("--test-size", type=float, default=0.28, help="held-out share (default 0.28)")
    parser.add_argument("--n-jobs", type=int, default=1, help="LightGBM threads (default 1)")
    parser.add_argument(
        "--floor", type=Path, default=results_path("noise_floor"),
        help="noise_floor.py results measured on runs of this corpus (default benchmarks/results/noise_floor.json)",
    )  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_split_arguments(parser)
    parser.add_argument("--margin", type=float, default=1.0, help="go/no-go threshold above the base score (pp)")
    parser.add_argument("--threshold", type=float, help="absolute go/no-go threshold (overrides --margin)")
    parser.add_argument("--interval-method", default="cv", choices=["cv", "cv-normalized", "split"])
    parser.add_argument("--out", type=Path, default=results_path("accuracy"))
    args = parser.parse_args()

    table, source = load_corpus(args.corpus)
    threshold = args.threshold if args.threshold is not None else float(table["base_score"].median()) + args.margin
    print(f"corpus: {source}: {len(table)} runs, score mean {table[TARGET].mean():.2f} std {table[TARGET].std():.2f}")
    started = time.perf_counter()
    config = PredictorConfig(n_jobs=args.n_jobs, interval_method=args.interval_method)
    models = corpus_models(config, table.columns)
    random = cross_validate(
        table, TARGET, splits=args.seeds, test_size=args.test_size, models=models, return_predictions=True
    )
    grouped_config = config.model_copy(update={"group": GROUP})
    family = cross_validate(
        table,
        TARGET,
        splits=args.seeds,
        test_size=args.test_size,
        group=GROUP,
        models=corpus_models(grouped_config, table.columns),
    )
    figures = screening(table, random, threshold)
    seconds = time.perf_counter() - started

    for title, report in (("random splits", random), (f"{GROUP}-held-out splits", family)):
        print(f"\n### {title}: {args.seeds} x {args.test_size:.0%} held out\n")
        print(accuracy_table(report))
        ratios = rmse_ratios(report)
        strong = f", StrongProxyLM {ratios['StrongProxyLM']:.2f}x" if "StrongProxyLM" in ratios else ""
        print(
            f"\nRMSE ratio vs TuneAhead: early stop {ratios['EarlyStopExtrapolation']:.2f}x, "
            f"ProxyLM {ratios['ProxyLM']:.2f}x{strong} (TuneAhead / ProxyLM = {1 / ratios['ProxyLM']:.2f})"
        )
    print(f"\n### go/no-go at {threshold:.2f} pp (random splits' held-out runs)\n")
    print(screening_table(figures))
    floor = noise_floor(float(table[TARGET].std()), corpus_benchmark_items(table), args.floor)
    checks = target_checks(random, family, floor)
    print("\ntargets: " + ", ".join(f"{k}: {'met' if ok else 'missed'}" for k, ok in checks.items()))
    if floor is not None:
        print(
            f"noise floor (same run, other training seeds; {floor['candidates']} candidates): seed std "
            f"{floor['seed_std_pp']:.2f} pp = RMSE/std {floor['rmse_over_std_floor']:.3f}; within ±3pp ceiling "
            f"{floor['within_3pp_ceiling']:.0%}"
        )

    result = {
        "corpus": str(source),
        "rows": len(table),
        "target": TARGET,
        "target_std": float(table[TARGET].std()),
        "config": config.model_dump(),
        "random": _summary(random),
        "family_held_out": _summary(family),
        "rmse_ratios": {"random": rmse_ratios(random), "family_held_out": rmse_ratios(family)},
        "go_no_go": {"threshold": threshold, "cost": "seconds", "figures": figures},
        "targets_met": checks,
        "noise_floor": floor,
        "seconds": seconds,
    }
    write_results("accuracy", result, args, args.out)
    print(f"\nwrote {args.out} ({seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
