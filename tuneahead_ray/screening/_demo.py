"""The demo screening: seven testbed datasets of varied quality x 32 hyperparameter points = 224 candidates."""

from __future__ import annotations

from pathlib import Path

import yaml

from tuneahead_ray.constants import Policy
from tuneahead_ray.testbed import DataSpec, write_dataset

__all__ = ["DEMO_DATASETS", "DEMO_GRID", "write_demo"]

#: Datasets like a team's collection: clean, small, noisy, off-target, duplicated, corrupted, easy-only.
DEMO_DATASETS: dict[str, DataSpec] = {
    "clean": DataSpec(size=3000, seed=11),
    "small_clean": DataSpec(size=600, seed=12),
    "noisy": DataSpec(size=3000, label_noise=0.4, seed=13),
    "off_target": DataSpec(size=3000, off_target=0.6, seed=14),
    "duplicated": DataSpec(size=3000, duplication=0.7, seed=15),
    "corrupted": DataSpec(size=3000, format_corruption=0.4, seed=16),
    "easy_only": DataSpec(size=3000, max_level=2, seed=17),
}

#: The grid (inside the corpus's hyperparameter space, so the default predictor is on familiar ground).
DEMO_GRID: dict = {
    "model": "default",
    "datasets": ["data/*.jsonl"],
    "hp": {
        "lr": {"log_range": [5.0e-4, 1.6e-2], "num": 4},
        "lora_r": [4, 16],
        "lora_alpha": 32,
        "epochs": [1, 2],
        "batch_size": [16, 32],
        "max_seq_len": 64,
    },
    "probe": {"fraction": 0.05, "min_steps": 20, "max_steps": 100},
    "threshold": 52.0,  # success: +5pp over the base model (46.9)
    "policy": Policy.EXPECTED_GAIN.value,
    "budget": {"full_runs": 20},
    "cost": {"kind": "tokens", "tokens_per_second": 30000},  # the embedded model on one CPU core
    "output_dir": "screening",
}


def write_demo(directory: str | Path) -> Path:
    """Write the demo datasets (deterministic) and its grid into ``directory``; return the grid path."""
    directory = Path(directory)
    for name, spec in DEMO_DATASETS.items():
        path = directory / "data" / f"{name}.jsonl"
        if not path.exists():
            write_dataset(spec, path)
    grid = directory / "grid.yaml"
    header = "# The demo screening grid: edit it and run `tuneahead-ray screen grid.yaml` again.\n"
    grid.write_text(header + yaml.safe_dump(DEMO_GRID, sort_keys=False), encoding="utf-8")
    return grid
