"""``probe_datasets``: one standardized probe per dataset and base model, its features joined to the dataset's
descriptors, and a failed probe failing exactly its dataset's candidates (the pool is replaced by a fake here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneahead_ray._private.workers import WorkerFailure
from tuneahead_ray.features import DATASET_PROBE_FEATURES, FeatureProtocolError
from tuneahead_ray.features import compute as compute_module
from tuneahead_ray.features.compute import dataset_probe_id, dataset_probe_path, probe_datasets
from tuneahead_ray.probe import DatasetProbeSpec, ProbeResult, ProbeSpec
from tuneahead_ray.schemas import Candidate, DatasetRef, HyperParams


def _candidate(path: Path, lr: float) -> Candidate:
    return Candidate(model="default", dataset=DatasetRef(path=path), hp=HyperParams(lr=lr, max_steps=40))


@pytest.fixture
def fake_pool(monkeypatch):
    """Probes every dataset whose file name does not start with 'bad'; records what it was asked to probe."""
    asked: list[set[str]] = []

    def run_dataset_probes(
        datasets, store, *, model, spec, dataset_spec, pool_config=None, on_progress=None, pool=None
    ):
        todo = {key: d for key, d in datasets.items() if dataset_probe_id(model, key) not in store}
        asked.append(set(todo))
        failures = []
        for key, dataset in todo.items():
            if dataset.path.name.startswith("bad"):
                failures.append(WorkerFailure(key, "CUDA out of memory", 3))
                continue
            result = ProbeResult(
                candidate_id=key, features={n: float(len(key)) for n in DATASET_PROBE_FEATURES}, probe_steps=20,
                total_steps=20, num_examples=10, truncated_examples=0, tokens=320, probe_seconds=0.5, diverged=False,
            )  # fmt: skip
            store.append(compute_module.dataset_probe_row(model, key, result))
        return failures

    monkeypatch.setattr(compute_module, "run_dataset_probes", run_dataset_probes)
    return asked


def test_one_probe_per_dataset_joined_to_its_descriptors_and_failures_per_candidate(tmp_path, fake_pool) -> None:
    good, bad = tmp_path / "good.jsonl", tmp_path / "bad.jsonl"
    todo = {"a": _candidate(good, 1e-3), "b": _candidate(good, 1e-2), "c": _candidate(bad, 1e-3)}
    fingerprints = {good: "fp-good", bad: "fp-bad"}
    static = {"fp-good": {"num_rows": 10.0}, "fp-bad": {"num_rows": 5.0}}
    out = tmp_path / "features.parquet"
    args = {"model": "default", "spec": ProbeSpec(), "dataset_spec": DatasetProbeSpec()}

    merged, rows, failures = probe_datasets(todo, fingerprints, static, out, **args)
    assert fake_pool == [{"fp-good", "fp-bad"}]  # two datasets, three candidates: two probes
    assert set(merged) == {"fp-good"} and merged["fp-good"]["num_rows"] == 10.0
    assert all(name in merged["fp-good"] for name in DATASET_PROBE_FEATURES)
    assert set(rows) == {"fp-good"} and rows["fp-good"]["dataset_probe_tokens"] == 320
    assert [(f.key, f.error) for f in failures] == [("c", "dataset probe failed: CUDA out of memory")]
    assert dataset_probe_path(out).with_name(dataset_probe_path(out).name + ".jsonl").exists()

    # A rerun probes only what is missing (the failed dataset); another base model probes its datasets again.
    probe_datasets(todo, fingerprints, static, out, **args)
    assert fake_pool[-1] == {"fp-bad"}
    _, rows, _ = probe_datasets(todo, fingerprints, static, out, **{**args, "model": "/models/other"})
    assert fake_pool[-1] == {"fp-good", "fp-bad"} and set(rows) == {"fp-good"}
    # Another dataset-probe protocol is refused, naming the file.
    with pytest.raises(FeatureProtocolError, match="dataset_probes.parquet"):
        probe_datasets(todo, fingerprints, static, out, **{**args, "dataset_spec": DatasetProbeSpec.model_validate(
            {"hp": {"max_steps": 10}})})  # fmt: skip
