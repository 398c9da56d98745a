"""Ray Tune over LoRA runs of the embedded model, with ASHA + TuneAheadScheduler: each trial's first K steps are its
probe; the default predictor reads the probe's features and the trials predicted below the threshold stop there.

    python examples/tune_lora.py [--dir tune_lora_demo] [--threshold 48] [--num-cpus 2]

Four of the demo screening's datasets (clean, noisy, off-target, corrupted) x two learning rates = 8 trials of a
few seconds each; the first run trains the default predictor on the shipped corpus (cached afterwards).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import ray
from ray import tune
from ray.tune.schedulers import AsyncHyperBandScheduler

from tuneahead_ray.screening import DEMO_DATASETS, DEMO_GRID
from tuneahead_ray.testbed import write_dataset
from tuneahead_ray.tune import TuneAheadScheduler, lora_trainable

DATASETS = ("clean", "noisy", "off_target", "corrupted")
COLUMNS = {
    "config/dataset": "dataset",
    "config/hp/lr": "lr",
    "tuneahead_decision": "decision",
    "tuneahead_predicted": "predicted",
    "tuneahead_lower": "lower",
    "tuneahead_upper": "upper",
    "step": "last step",
    "score": "actual score",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("tune_lora_demo"), help="datasets and Tune results")
    parser.add_argument(
        "--threshold", type=float, default=48.0, help="GO: predicted score >= it (default: the base model's 46.9 + 1pp)"
    )
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    args = parser.parse_args()
    directory = args.dir.resolve()
    paths = []
    for name in DATASETS:
        path = directory / "data" / f"{name}.jsonl"
        if not path.exists():
            write_dataset(DEMO_DATASETS[name], path)
        paths.append(str(path))

    ray.init(
        address="local",
        num_cpus=args.num_cpus,
        include_dashboard=False,
        log_to_driver=False,
        _node_ip_address="127.0.0.1",
    )
    asha = AsyncHyperBandScheduler(time_attr="step", grace_period=30, reduction_factor=3, max_t=100)
    scheduler = TuneAheadScheduler(threshold=args.threshold, base=asha)  # the default predictor
    tuner = tune.Tuner(
        lora_trainable,
        param_space={
            "dataset": tune.grid_search(paths),
            "hp": {
                "lr": tune.grid_search([1e-3, 4e-3]),
                "lora_r": 16,
                "lora_alpha": 32,
                "epochs": 1,
                "batch_size": 32,
                "max_seq_len": 64,
            },  # fmt: skip
            "probe": DEMO_GRID["probe"],
            "report_every": 10,
            "device": "cpu",
        },
        tune_config=tune.TuneConfig(scheduler=scheduler, metric="loss", mode="min", reuse_actors=True),
        run_config=tune.RunConfig(
            name="tune_lora", storage_path=str(directory / "ray_results"), callbacks=[scheduler.callback()], verbose=0
        ),
    )
    results = tuner.fit()
    table = results.get_dataframe().reindex(columns=list(COLUMNS)).rename(columns=COLUMNS)
    table["dataset"] = table["dataset"].map(lambda path: Path(path).stem)
    scores = ["predicted", "lower", "upper", "actual score"]
    table[scores] = table[scores].round(1)
    print(f"\nthreshold {args.threshold:g}; stopped by the predictor: NO-GO; stopped by ASHA: GO, last step < the end")
    print(table.sort_values(["decision", "predicted"], ascending=[True, False]).to_string(index=False))
    print(scheduler.debug_string())
    ray.shutdown()


if __name__ == "__main__":
    main()
