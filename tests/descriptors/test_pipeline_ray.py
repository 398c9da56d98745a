"""The Ray Data descriptor pipeline on a real local Ray: same values as the in-process run, and the cache."""

from __future__ import annotations

from pathlib import Path

import pytest

import tuneahead_ray.descriptors.pipeline as pipeline
from tuneahead_ray.descriptors.pipeline import compute_descriptors
from tuneahead_ray.features import MODEL_FEATURES, ROW_FEATURES, STATIC_FEATURES
from tuneahead_ray.testbed import DataSpec, write_dataset

pytestmark = [pytest.mark.slow, pytest.mark.integration]

SAMPLE = 48


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = DataSpec(size=1500, duplication=0.3, format_corruption=0.2, off_target=0.2, seed=11)
    return write_dataset(spec, tmp_path_factory.mktemp("descriptors") / "train.jsonl")


def test_ray_pipeline_matches_the_in_process_run_and_is_cached(
    ray_session: None, dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline, "ROWS_PER_BLOCK", 200)  # 8 blocks over both actors
    cache = tmp_path / "cache"
    on_ray = compute_descriptors(dataset, use_ray=True, sample_size=SAMPLE, device="cpu", cache_dir=cache)
    in_process = compute_descriptors(dataset, use_ray=False, sample_size=SAMPLE, device="cpu")

    assert tuple(on_ray) == STATIC_FEATURES
    assert on_ray["num_rows"] == 1500
    for name in ROW_FEATURES:
        assert on_ray[name] == pytest.approx(in_process[name], rel=1e-9, abs=1e-9), name
    for name in MODEL_FEATURES:
        assert on_ray[name] == pytest.approx(in_process[name], abs=1e-4), name

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("recomputed despite a cache entry")

    monkeypatch.setattr(pipeline, "describe_table", fail)
    assert compute_descriptors(dataset, use_ray=True, sample_size=SAMPLE, device="cpu", cache_dir=cache) == on_ray


def test_model_sample_goes_to_a_gpu_actor_the_driver_or_a_cpu_actor(
    ray_session: None, dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The session declares (fake) GPUs: with device "auto" the sample is a Ray Data pipeline on an actor that
    # requests one; with device "cpu" the driver scores a small model's sample, a CPU actor a large model's.
    monkeypatch.setattr(pipeline, "ROWS_PER_BLOCK", 500)
    assert pipeline._scorer_gpus("auto") == 1.0 and pipeline._scorer_gpus("cpu") == 0.0
    scored_in_driver = []
    score = pipeline.ModelScorer.__call__

    def recording_call(self: object, batch: object) -> object:
        scored_in_driver.append(batch)
        return score(self, batch)

    # Actors import the class afresh, so only scoring in this process is recorded.
    monkeypatch.setattr(pipeline.ModelScorer, "__call__", recording_call)
    on_gpu_actor = compute_descriptors(dataset, use_ray=True, sample_size=SAMPLE, device="auto")
    assert scored_in_driver == []  # the actor, not this process, loaded the model
    on_driver = compute_descriptors(dataset, use_ray=True, sample_size=SAMPLE, device="cpu")
    assert len(scored_in_driver) == 1
    # A model above the size limit never loads into the driver: a CPU actor scores it.
    monkeypatch.setattr(pipeline, "DRIVER_SCORING_MAX_BYTES", 0)
    on_cpu_actor = compute_descriptors(dataset, use_ray=True, sample_size=SAMPLE, device="cpu")
    assert len(scored_in_driver) == 1
    for name in MODEL_FEATURES:
        assert on_gpu_actor[name] == pytest.approx(on_driver[name], abs=1e-4), name
        assert on_cpu_actor[name] == pytest.approx(on_driver[name], abs=1e-4), name
