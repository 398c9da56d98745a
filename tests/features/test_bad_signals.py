"""Bad training signals: NaN and inf losses, exploding and non-finite gradients, lr = 10 and empty datasets.

A probe that meets any of them is a result, not an exception: ``diverged`` is set, ``probe_diverged`` is 1, every
other feature is finite or NaN (NaN where the probe died before the quantity existed; never +-inf), the base
weights are untouched and the next candidate probes exactly as if nothing had happened. The default screening
predictor (trained once per session into a temporary cache) predicts such a diverged candidate below the base
model's score. An empty dataset is a DatasetError naming the file.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests._harness.faults import inject_at
from tuneahead_ray.data import DatasetError
from tuneahead_ray.descriptors.pipeline import compute_descriptors
from tuneahead_ray.features import DESCRIPTOR_SAMPLE_SIZE, PROBE_FEATURES
from tuneahead_ray.features.compute import feature_row
from tuneahead_ray.probe import DatasetProbeSpec, ProbeResult, ProbeSpec, RunWorker
from tuneahead_ray.schemas import Candidate, DatasetRef, HyperParams
from tuneahead_ray.screening import load_predictors
from tuneahead_ray.screening._grid import GridSpec
from tuneahead_ray.testbed import DataSpec, write_dataset

SPEC = ProbeSpec(fraction=0.2, min_steps=12, max_steps=12, interval=4, heldout_size=8)
#: A short, healthy run of the testbed: lr 2e-3 learns.
HEALTHY = {"lr": 2e-3, "max_steps": 60, "batch_size": 8, "max_seq_len": 48}
INJECT_AT = 6  # the training step at which an injected fault appears


@pytest.fixture(scope="session")
def default_predictors(predictor_cache):
    """The default screening predictors, trained once per session into the session's temporary cache (~30 s)."""
    return load_predictors(GridSpec(datasets=["unused.jsonl"]))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_dataset(DataSpec(size=96, seed=1), tmp_path_factory.mktemp("signals") / "clean.jsonl")


@pytest.fixture(scope="module")
def worker() -> RunWorker:
    return RunWorker("default", "cpu")


def candidate(dataset: Path, **hp) -> Candidate:
    return Candidate(model="default", dataset=DatasetRef(path=dataset), hp=HyperParams(**{**HEALTHY, **hp}))


def check_diverged(result: ProbeResult) -> None:
    assert result.diverged
    assert sorted(result.features) == sorted(PROBE_FEATURES)
    assert result.features["probe_diverged"] == 1.0
    infinite = {k: v for k, v in result.features.items() if math.isinf(v)}
    assert not infinite, f"features must be finite or NaN: {infinite}"
    assert result.probe_steps <= SPEC.steps_for(result.total_steps)


@pytest.fixture(scope="module")
def healthy(worker, dataset) -> ProbeResult:
    result = worker.probe(candidate(dataset), SPEC)
    assert not result.diverged and result.features["probe_diverged"] == 0.0
    assert all(math.isfinite(v) for v in result.features.values()), result.features
    return result


# Blow-ups whose loss ends far above the first step's on any CPU. Not "lr 10 without clipping": its loss wanders
# chaotically after the blow-up and, on some machines, settles near 2.3x the first loss, under the 3x factor.
HP_FAULTS = {
    "lr 10": {"lr": 10.0},
    "exploding gradients (alpha/r 4096, no clipping)": {
        "lr": 1.0,
        "lora_r": 1,
        "lora_alpha": 4096.0,
        "max_grad_norm": None,
    },
}


@pytest.mark.parametrize("case", HP_FAULTS)
def test_hyperparameters_that_blow_up_are_a_diverged_result(worker, dataset, healthy, case) -> None:
    before = worker.base_fingerprint()
    result = worker.probe(candidate(dataset, **HP_FAULTS[case]), SPEC)
    check_diverged(result)
    if "exploding" in case:
        assert result.features["probe_grad_norm_max"] > 100 * healthy.features["probe_grad_norm_max"]
    assert worker.base_fingerprint() == before
    assert worker.probe(candidate(dataset), SPEC).features == healthy.features  # nothing leaks to the next probe


@pytest.mark.parametrize("fault", ["nan_loss", "inf_loss", "inf_grad"])
def test_injected_non_finite_signals_are_a_diverged_result(worker, dataset, healthy, monkeypatch, fault) -> None:
    before = worker.base_fingerprint()
    with monkeypatch.context() as patch:
        inject_at(patch, fault, INJECT_AT)
        result = worker.probe(candidate(dataset), SPEC)
    check_diverged(result)
    assert result.probe_steps == INJECT_AT  # the probe stops at the first non-finite step
    assert result.features["probe_initial_loss"] == healthy.features["probe_initial_loss"]  # same run until then
    assert math.isnan(result.features["probe_final_loss"])  # it never reached a final loss
    assert worker.base_fingerprint() == before
    assert worker.probe(candidate(dataset), SPEC).features == healthy.features


@pytest.mark.parametrize("content", ["", "\n\n", "[]"])
def test_an_empty_dataset_is_a_clear_error(worker, tmp_path, content) -> None:
    path = tmp_path / ("empty.json" if content == "[]" else "empty.jsonl")
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DatasetError) as caught:
        worker.probe(candidate(path), SPEC)
    assert str(caught.value) == f"{path}: no records"


def predicted_scores(worker, dataset, healthy, predictors, faults: dict[str, dict], injected: tuple[str, ...] = ()):
    """Default-predictor scores of the healthy candidate and of each faulty one, with their feature rows (the
    dataset's descriptors and standardized probe, under the corpus's protocol, are shared by all of them)."""
    static = {
        **compute_descriptors(dataset, use_ray=False, sample_size=DESCRIPTOR_SAMPLE_SIZE, device="cpu"),
        **worker.dataset_probe(DatasetRef(path=dataset), ProbeSpec(), DatasetProbeSpec()).features,
    }
    fingerprint = DatasetRef(path=dataset).fingerprint()
    rows = {"healthy": feature_row(candidate(dataset), fingerprint, static, healthy)}
    for name, hp in faults.items():
        run = candidate(dataset, **hp)
        rows[name] = feature_row(run, fingerprint, static, worker.probe(run, SPEC))
    for fault in injected:
        with pytest.MonkeyPatch.context() as patch:
            inject_at(patch, fault, INJECT_AT)
            rows[fault] = feature_row(candidate(dataset), fingerprint, static, worker.probe(candidate(dataset), SPEC))
    table = pd.DataFrame(list(rows.values()), index=list(rows))
    lower, upper = predictors.full.predict_interval(table)
    assert np.isfinite(lower).all() and np.isfinite(upper).all()
    return pd.Series(predictors.full.predict(table), index=table.index)


@pytest.mark.slow  # trains the default predictors once per session (~30 s)
def test_the_default_predictor_predicts_diverging_hyperparameters_as_failures(
    worker, dataset, healthy, default_predictors
) -> None:
    predicted = predicted_scores(worker, dataset, healthy, default_predictors, HP_FAULTS)
    base = default_predictors.base_score
    failures = predicted.drop("healthy")
    assert (failures < base).all(), f"base {base:.1f}: {predicted.round(1).to_dict()}"
    assert (failures < predicted["healthy"] - 10).all(), predicted.round(1).to_dict()


@pytest.mark.slow
def test_the_default_predictor_predicts_a_nan_probe_at_a_sane_lr_as_a_failure(
    worker, dataset, healthy, default_predictors
) -> None:
    predicted = predicted_scores(worker, dataset, healthy, default_predictors, {}, ("nan_loss", "inf_grad"))
    assert (predicted.drop("healthy") < default_predictors.base_score).all(), predicted.round(1).to_dict()
