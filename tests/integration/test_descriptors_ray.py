"""The Ray Data descriptor pipeline on a real local Ray: same values as the in-process run, and the cache."""

from __future__ import annotations

from pathlib import Path

import pytest

import tuneahead_ray.descriptors._pipeline as pipeline
from tuneahead_ray.descriptors import MODEL_FEATURES, ROW_FEATURES, STATIC_FEATURES, compute_descriptors
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
