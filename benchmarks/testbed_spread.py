"""Does the testbed behave like real fine-tuning? >= 40 full LoRA runs over hyperparameters and data quality.

Prints a table per scenario group and writes ``benchmarks/results/testbed_spread.json``. Targets (issue 2): good
runs gain >= 15pp over the base model, bad ones fall below it, and scores spread with std >= 8pp. Also measures
the wall time of one run of the default configuration and the probe share it implies.

    python benchmarks/testbed_spread.py [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests._harness, benchmarks

import ray
from tqdm import tqdm

from tests._harness.results import markdown_table, write_results
from tuneahead_ray.schemas import HyperParams
from tuneahead_ray.testbed import DataSpec

BASE_HP = {"lr": 3e-3, "lora_r": 8, "lora_alpha": 16, "batch_size": 16, "epochs": 2, "max_seq_len": 64}
#: The probe's share of a run: the paper's K is ~5% of the full run's steps.
PROBE_FRACTION = 0.05


def _scenarios() -> list[tuple[str, dict, dict]]:
    """(group, data knobs, hyperparameters); the random group samples every knob at once."""
    good = [
        ("good", {"size": 4000, "seed": s}, {**BASE_HP, "lr": lr, "seed": s})
        for s, lr in enumerate([2e-3, 3e-3, 4e-3, 3e-3, 2e-3, 3e-3])
    ] + [("good", {"size": 3000, "seed": 7}, {**BASE_HP, "lora_r": 16, "lora_alpha": 32, "epochs": 3})]
    high_lr = [("high lr", {"size": 4000, "seed": 1}, {**BASE_HP, "lr": lr}) for lr in (2e-2, 5e-2, 0.1, 0.3, 1.0)]
    low_lr = [("low lr", {"size": 4000, "seed": 2}, {**BASE_HP, "lr": lr}) for lr in (1e-5, 1e-4)]
    noisy = [("label noise", {"size": 4000, "label_noise": n, "seed": 3}, BASE_HP) for n in (0.3, 0.6, 0.8, 1.0)]
    off = [("off-target", {"size": 4000, "off_target": o, "seed": 4}, BASE_HP) for o in (0.5, 0.8, 0.95, 1.0)]
    rng = random.Random(2026)
    sampled = []
    for i in range(22):
        knobs = {
            "size": rng.choice([300, 800, 1500, 3000, 5000]),
            "label_noise": rng.choice([0.0, 0.0, 0.1, 0.3, 0.6]),
            "duplication": rng.choice([0.0, 0.0, 0.3, 0.7]),
            "format_corruption": rng.choice([0.0, 0.0, 0.2, 0.5]),
            "off_target": rng.choice([0.0, 0.0, 0.2, 0.5]),
            "min_level": 1,
            "max_level": rng.choice([2, 3, 5, 5]),
            "seed": 100 + i,
        }
        hp = {
            **BASE_HP,
            "lr": 10 ** rng.uniform(-4, -1.3),
            "lora_r": rng.choice([2, 4, 8, 16]),
            "batch_size": rng.choice([8, 16, 32]),
            "epochs": rng.choice([1, 2, 3]),
            "lr_schedule": rng.choice(["linear", "cosine", "constant"]),
            "target_modules": rng.choice([["q_proj", "v_proj"], ["q_proj", "k_proj", "v_proj", "o_proj"], None]),
            "seed": i,
        }
        hp["lora_alpha"] = 2 * hp["lora_r"]
        if hp["target_modules"] is None:
            del hp["target_modules"]
        sampled.append(("random", knobs, hp))
    return good + high_lr + low_lr + noisy + off + sampled


@ray.remote(num_cpus=1)
def _run(index: int, group: str, knobs: dict, hp_fields: dict) -> dict:
    import torch

    from tuneahead_ray.probe import full_run
    from tuneahead_ray.schemas import Candidate, DatasetRef
    from tuneahead_ray.testbed import write_dataset

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_dataset(DataSpec(**knobs), Path(tmp) / "data.jsonl")
        result = full_run(Candidate(model="default", dataset=DatasetRef(path=path), hp=HyperParams(**hp_fields)))
    return {
        "index": index,
        "group": group,
        "knobs": knobs,
        **json.loads(result.model_dump_json(exclude={"loss_curve"})),
    }


def _summary(rows: list[dict]) -> dict:
    base = rows[0]["base_score"]
    scores = [r["score"] for r in rows]
    groups = {}
    for name in dict.fromkeys(r["group"] for r in rows):
        gains = [r["score"] - base for r in rows if r["group"] == name]
        groups[name] = {
            "runs": len(gains),
            "mean_gain": statistics.mean(gains),
            "min_gain": min(gains),
            "max_gain": max(gains),
        }
    good = [r["score"] - base for r in rows if r["group"] == "good"]
    bad = [r["score"] - base for r in rows if r["group"] in ("high lr", "label noise", "off-target")]
    return {
        "runs": len(rows),
        "base_score": base,
        "score_mean": statistics.mean(scores),
        "score_std": statistics.stdev(scores),
        "score_min": min(scores),
        "score_max": max(scores),
        "distinct_scores": len({round(s, 4) for s in scores}),
        "good_runs_gaining_15pp": sum(g >= 15 for g in good),
        "good_runs": len(good),
        "bad_runs_below_base": sum(g < 0 for g in bad),
        "bad_runs": len(bad),
        "groups": groups,
    }


def _default_run_timing() -> dict:
    """Wall time of one run of the default demo configuration, alone on the machine (2 threads)."""
    from tuneahead_ray.probe import full_run
    from tuneahead_ray.schemas import Candidate, DatasetRef
    from tuneahead_ray.testbed import DEMO_HP, write_dataset
    from tuneahead_ray.yaml_config import load_yaml_model

    hp = load_yaml_model(DEMO_HP, HyperParams)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_dataset(DataSpec(size=4000), Path(tmp) / "data.jsonl")
        result = full_run(Candidate(model="default", dataset=DatasetRef(path=path), hp=hp), device="cpu")
    step_seconds = result.train_seconds / result.steps
    probe_steps = max(10, round(PROBE_FRACTION * result.steps))
    return {
        "steps": result.steps,
        "wall_seconds": result.wall_seconds,
        "train_seconds": result.train_seconds,
        "eval_seconds": result.eval_seconds,
        "seconds_per_step": step_seconds,
        "probe_steps": probe_steps,
        "probe_share_of_run": probe_steps * step_seconds / result.wall_seconds,
    }


def _print_tables(summary: dict, timing: dict) -> None:
    rows = [
        {
            "group": name,
            "runs": g["runs"],
            "mean gain (pp)": f"{g['mean_gain']:+.1f}",
            "min gain": f"{g['min_gain']:+.1f}",
            "max gain": f"{g['max_gain']:+.1f}",
        }
        for name, g in summary["groups"].items()
    ]
    print("\n" + markdown_table(rows))
    print(
        f"\nbase score {summary['base_score']:.1f} pp; {summary['runs']} runs; scores {summary['score_min']:.1f}"
        f"..{summary['score_max']:.1f} pp, mean {summary['score_mean']:.1f}, std {summary['score_std']:.1f} pp,"
        f" {summary['distinct_scores']} distinct values"
    )
    print(
        f"good runs gaining >= 15pp: {summary['good_runs_gaining_15pp']}/{summary['good_runs']}; "
        f"bad runs below base: {summary['bad_runs_below_base']}/{summary['bad_runs']}"
    )
    print(
        f"default run: {timing['steps']} steps, {timing['wall_seconds']:.1f} s wall "
        f"({timing['train_seconds']:.1f} s training, {timing['eval_seconds']:.1f} s two evaluations); "
        f"a {timing['probe_steps']}-step probe is {100 * timing['probe_share_of_run']:.1f}% of it"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()

    timing = _default_run_timing()
    ray.init(address="local", num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
    scenarios = _scenarios()
    started = time.perf_counter()
    pending = [_run.remote(i, *s) for i, s in enumerate(scenarios)]
    rows = []
    with tqdm(total=len(pending), desc="full runs", unit="run") as bar:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            rows.append(ray.get(done[0]))
            bar.update(1)
    ray.shutdown()
    rows.sort(key=lambda r: r["index"])
    summary = _summary(rows)
    _print_tables(summary, timing)
    payload = {
        "elapsed_seconds": time.perf_counter() - started,
        "summary": summary,
        "default_run": timing,
        "runs": rows,
    }
    write_results("testbed_spread", payload, args)


if __name__ == "__main__":
    main()
