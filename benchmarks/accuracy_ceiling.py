"""How good can any predictor of this corpus be? Oracle features, a learning curve, and the seed-noise floor.

``benchmarks/accuracy.py`` measures TuneAhead against its baselines; this benchmark asks where the remaining error
comes from, on the same random splits (28% held out, one per seed) and with the same regressor settings:

- **generator oracle**: the testbed generator's own description of each run's dataset (size, levels, label noise,
  duplication, format corruption, off-target share and the task-family mix, read from ``data_spec``) plus the
  hyperparameters: everything that defines the run except its seeds. No descriptor of a dataset can know more, so
  this is the ceiling of better static descriptors.
- **oracle + probe**: the same with the probe features added.
- **no probe / candidate's probe only**: what the probes add to static descriptors and hyperparameters (the
  pre-screen predictor's features), and what the dataset's standardized probe adds to the candidate's own.
- **TuneAhead + proxy score**: what the ProxyLM baseline's proxy fine-tune adds to TuneAhead's own features.
- **learning curve**: TuneAhead and ProxyLM trained on 40/60/80/100% of each training split, the same held-out
  rows, extrapolated to 2x and 4x the runs (a power law on RMSE² minus the noise floor²): how much a larger corpus
  would help.
- **noise floor**: the seed std of ``benchmarks/noise_floor.py`` (when it has been run), which no predictor of a
  candidate can beat on average.

Prints markdown tables and writes ``benchmarks/results/accuracy_ceiling.json``.

    python benchmarks/accuracy_ceiling.py [--corpus corpus/corpus.parquet] [--seeds 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests._harness, benchmarks

import numpy as np
import pandas as pd

from benchmarks.accuracy import TARGET, add_split_arguments, corpus_benchmark_items, load_corpus, noise_floor
from tests._harness.results import markdown_table, results_path, write_results
from tuneahead_ray.features import FEATURE_GROUPS
from tuneahead_ray.predictor import PredictorConfig, ProxyLM, ScorePredictor, evaluation_splits, regression_metrics

#: The testbed generator's knobs as the corpus records them (``data_*`` columns); the family mix is in data_spec.
GENERATOR_KNOBS = (
    "data_size",
    "data_min_level",
    "data_max_level",
    "data_label_noise",
    "data_duplication",
    "data_format_corruption",
    "data_off_target",
)
FRACTIONS = (0.4, 0.6, 0.8, 1.0)


def with_family_mix(table: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """``table`` plus one ``mix_<family>`` column per task family: its share of the dataset's generator mix."""
    mixes = [json.loads(spec)["families"] for spec in table["data_spec"]]
    families = sorted({name for mix in mixes for name in mix})
    shares = pd.DataFrame(
        [{f"mix_{name}": mix.get(name, 0.0) / sum(mix.values()) for name in families} for mix in mixes],
        index=table.index,
    )
    return pd.concat([table, shares], axis=1), list(shares.columns)


def feature_sets(mix: list[str], columns: pd.Index) -> dict[str, list[str]]:
    """The feature list of every model compared here, by display name (``proxy_gain`` as ProxyLM computes it);
    "probe" is the candidate's probe and, where the corpus has it, its dataset's standardized probe."""
    groups = FEATURE_GROUPS
    static, hp = list(groups["static"]), list(groups["hp"])
    probe = [name for name in (*groups["probe"], *groups["dataset_probe"]) if name in columns]
    oracle = [*GENERATOR_KNOBS, *mix, *hp]
    return {
        "TuneAhead (static + probe + hp)": [*static, *probe, *hp],
        "no probe (static + hp)": [*static, *hp],
        "candidate's probe only (static + its probe + hp)": [*static, *groups["probe"], *hp],
        "generator oracle (data spec + hp)": oracle,
        "generator oracle + probe": [*oracle, *probe],
        "ProxyLM (proxy + static + hp)": ["proxy_score", "proxy_gain", *static, *hp],
        "TuneAhead + proxy score": [*static, *probe, *hp, "proxy_score", "proxy_gain"],
    }


def evaluate(
    table: pd.DataFrame, features: list[str], splits: list, config: PredictorConfig, fraction: float = 1.0
) -> dict[str, float]:
    """Mean held-out metrics over ``splits``, training on the first ``fraction`` of each (shuffled) training split."""
    y = table[TARGET].to_numpy(dtype=float)
    rows = []
    for index, (train, test) in enumerate(splits):
        keep = int(round(fraction * len(train)))
        subset = train if keep == len(train) else np.sort(np.random.default_rng(index).permutation(train)[:keep])
        model = ScorePredictor(features, config).fit(table.iloc[subset], TARGET)
        rows.append(regression_metrics(y[test], model.predict(table.iloc[test])))
    frame = pd.DataFrame(rows)
    return {**frame.mean().to_dict(), "rmse_std": float(frame["rmse"].std()), "n_train": len(subset)}


def extrapolate(points: list[dict[str, float]], floor: float, factor: float) -> float:
    """RMSE with ``factor`` times the largest training set: a power law fitted to RMSE² − floor² (the part more
    training runs can shrink) against training runs, on the learning curve's ``points``."""
    runs = np.log([p["n_train"] for p in points])
    excess = np.log(np.maximum([p["rmse"] ** 2 - floor**2 for p in points], 1e-9))
    slope, intercept = np.polyfit(runs, excess, 1)
    return float(np.sqrt(floor**2 + np.exp(intercept + slope * np.log(factor * points[-1]["n_train"]))))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_split_arguments(parser)
    parser.add_argument("--out", type=Path, default=results_path("accuracy_ceiling"))
    args = parser.parse_args()

    started = time.perf_counter()
    corpus, source = load_corpus(args.corpus)
    table, mix = with_family_mix(ProxyLM().inputs(corpus))
    sets = feature_sets(mix, table.columns)
    config = PredictorConfig(n_jobs=args.n_jobs)
    splits = evaluation_splits(len(table), args.seeds, args.test_size, seed=0)
    target_std = float(table[TARGET].std())
    print(f"corpus: {source}: {len(table)} runs, score std {target_std:.2f} pp")
    print(f"{args.seeds} random splits, {args.test_size:.0%} held out")

    models = {}
    for name, features in sets.items():
        models[name] = evaluate(table, features, splits, config)
        print(f"{name}: done", flush=True)
    rows = [
        {
            "model": name,
            "features": len(sets[name]),
            "RMSE (pp)": f"{m['rmse']:.2f} ± {m['rmse_std']:.2f}",
            "RMSE / std": f"{m['rmse_over_std']:.3f}",
            "within ±3pp": f"{100 * m['within_3pp']:.1f}%",
        }
        for name, m in models.items()
    ]
    print("\n" + markdown_table(rows))

    curve: dict[str, list[dict[str, float]]] = {}
    picked = ("TuneAhead (static + probe + hp)", "ProxyLM (proxy + static + hp)")
    rows = []
    for fraction in FRACTIONS:
        points = {
            name: models[name] if fraction == 1.0 else evaluate(table, sets[name], splits, config, fraction)
            for name in picked
        }
        for name, point in points.items():
            curve.setdefault(name, []).append({"fraction": fraction, **point})
        rows.append(
            {"training runs": points[picked[0]]["n_train"]}
            | {f"{name} RMSE (pp)": f"{points[name]['rmse']:.2f}" for name in picked}
        )
    print("\n" + markdown_table(rows))

    floor = noise_floor(target_std, corpus_benchmark_items(table), args.floor)
    seed_std = 0.0 if floor is None else floor["seed_std_pp"]
    projected = {name: {f"{k}x": extrapolate(points, seed_std, k) for k in (2, 4)} for name, points in curve.items()}
    for name, values in projected.items():
        print(f"{name}: extrapolated RMSE with 2x / 4x the runs {values['2x']:.2f} / {values['4x']:.2f} pp")
    if floor is not None:
        print(f"\nnoise floor: seed std {seed_std:.2f} pp = RMSE/std {floor['rmse_over_std_floor']:.3f}")
    seconds = time.perf_counter() - started
    result = {
        "corpus": str(source),
        "rows": len(table),
        "target_std": target_std,
        "splits": args.seeds,
        "test_size": args.test_size,
        "config": config.model_dump(),
        "feature_sets": sets,
        "models": models,
        "learning_curve": curve,
        "extrapolated_rmse": projected,
        "noise_floor_seed_std_pp": None if floor is None else floor["seed_std_pp"],
        "seconds": seconds,
    }
    write_results("accuracy_ceiling", result, args, args.out)
    print(f"\nwrote {args.out} ({seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
