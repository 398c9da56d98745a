"""A real Ray Tune run of the LoRA trainable on the embedded model under TuneAheadScheduler: the trials predicted
NO-GO stop at their probe, the others train to the end, and the result table shows predicted and actual scores."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ray import tune

from tuneahead_ray.features import FEATURE_GROUPS
from tuneahead_ray.predictor import FULL_GROUPS
from tuneahead_ray.testbed import DataSpec, write_dataset
from tuneahead_ray.tune import TuneAheadScheduler, lora_trainable

pytestmark = [pytest.mark.integration, pytest.mark.slow]

THRESHOLD = 50.0
PROBE_STEPS, TOTAL_STEPS = 6, 24


class ByDataset:
    """Predicts from the row's dataset (60 on the clean one, 40 on the noisy one, +-2), so that which trials are
    NO-GO is known; it keeps every row it is asked about."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def predict_interval(self, table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        self.rows.extend(table.to_dict("records"))
        predicted = np.where(table["dataset"].str.endswith("clean.jsonl"), 60.0, 40.0)
        return predicted - 2.0, predicted + 2.0


def test_tuner_stops_the_trials_predicted_no_go_and_runs_the_others_to_the_end(ray_session, tmp_path: Path) -> None:
    clean = write_dataset(DataSpec(size=160, seed=12), tmp_path / "clean.jsonl")
    noisy = write_dataset(DataSpec(size=160, label_noise=0.6, seed=13), tmp_path / "noisy.jsonl")
    predictor = ByDataset()
    scheduler = TuneAheadScheduler(predictor, threshold=THRESHOLD)
    param_space = {
        "dataset": tune.grid_search([str(clean), str(noisy)]),
        "hp": {
            "lr": tune.grid_search([2e-3, 8e-3]),
            "lora_r": 4,
            "batch_size": 16,
            "max_steps": TOTAL_STEPS,
            "max_seq_len": 64,
        },  # fmt: skip
        "probe": {
            "min_steps": PROBE_STEPS,
            "max_steps": PROBE_STEPS,
            "interval": 3,
            "heldout_size": 8,
            "reference_size": 16,
        },  # fmt: skip
        "report_every": 8,
        "device": "cpu",
        "descriptor_cache": str(tmp_path / "descriptors"),
    }
    tuner = tune.Tuner(
        lora_trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(scheduler=scheduler, metric="loss", mode="min", reuse_actors=True),
        run_config=tune.RunConfig(
            name="tune", storage_path=str(tmp_path / "ray_results"), verbose=0, callbacks=[scheduler.callback()]
        ),
    )
    results = tuner.fit()
    assert not results.errors
    table = results.get_dataframe()
    assert len(table) == 4 and set(scheduler.predictions) == set(table["trial_id"])

    for trial in table.itertuples(index=False):
        prediction = scheduler.predictions[trial.trial_id]
        assert prediction.go == (prediction.predicted >= THRESHOLD)
        assert (trial.tuneahead_predicted, trial.tuneahead_decision) == (
            prediction.predicted,
            "GO" if prediction.go else "NO-GO",
        )
        if prediction.go:  # trained to the end and scored
            assert trial.step == TOTAL_STEPS and math.isfinite(trial.score) and math.isfinite(trial.base_score)
        else:  # stopped on the probe's result, never trained further
            assert trial.step == PROBE_STEPS and math.isnan(trial.score)
    decisions = table.set_index("config/dataset")["tuneahead_decision"]
    assert sorted(decisions[str(clean)]) == ["GO", "GO"] and sorted(decisions[str(noisy)]) == ["NO-GO", "NO-GO"]

    # The rows the trials reported carry every feature of the default predictor (the dataset probe's among them), as
    # numbers; trials on the same dataset share one dataset probe (cached by content).
    assert "dataset_probe" in FULL_GROUPS
    features = [name for group in FULL_GROUPS for name in FEATURE_GROUPS[group]]
    assert len(predictor.rows) == 4
    for row in predictor.rows:
        assert all(isinstance(row[name], int | float) for name in features)
        assert row["probe_steps"] == PROBE_STEPS and row["total_steps"] == TOTAL_STEPS
    for dataset in (clean, noisy):
        shared = [row["dataset_probe_initial_loss"] for row in predictor.rows if row["dataset"] == str(dataset)]
        assert len(shared) == 2 and shared[0] == shared[1]
