"""Refreshing a corpus's features on the actor pool: ground truth kept, features replaced and added, resumable."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tuneahead_ray._private.store import ResultStore
from tuneahead_ray._private.workers import PoolConfig
from tuneahead_ray.corpus import CorpusSpec, refeature_checkpoint, refeature_corpus
from tuneahead_ray.features import (
    DATASET_PROBE_FEATURES,
    DESCRIPTOR_SAMPLE_SIZE,
    DESCRIPTORS_VERSION,
    HP_FEATURES,
    MODEL_FEATURES,
    PROBE_FEATURES,
    ROW_FEATURES,
    STATIC_FEATURES,
)
from tuneahead_ray.probe import DatasetProbeSpec, ProbeSpec
from tuneahead_ray.schemas import HyperParams
from tuneahead_ray.testbed import DataSpec

pytestmark = [pytest.mark.integration, pytest.mark.slow]
_SPEC = ProbeSpec(min_steps=4, max_steps=4, interval=2, reference_size=16)


def _spec(index: int) -> CorpusSpec:
    return CorpusSpec(
        data=DataSpec(size=40, seed=index, label_noise=0.5 * (index % 2)),
        hp=HyperParams(lr=3e-3, max_steps=8, batch_size=8, max_seq_len=48, seed=index),
    )


def _stale_corpus(path: Path, count: int) -> list[CorpusSpec]:
    """A corpus as an older version wrote it: ground truth, and a feature column with a stale value."""
    specs = [_spec(i) for i in range(count)]
    table = pa.table(
        {
            "candidate_id": [s.run_id() for s in specs],
            "data_spec": [s.data.model_dump_json() for s in specs],
            "hp": [s.hp.model_dump_json() for s in specs],
            "score": [40.0 + i for i in range(count)],
            "loss_curve": [[1.0, 0.5]] * count,
            "num_examples": [40] * count,
            "probe_final_loss": [-1.0] * count,
            "num_rows": [-7.0] * count,
        }
    )
    pq.write_table(table, path)
    return specs


def test_refeature_keeps_ground_truth_replaces_features_and_resumes(ray_session: None, tmp_path: Path) -> None:
    path = tmp_path / "corpus.parquet"
    _stale_corpus(path, 3)
    config = PoolConfig(num_workers=1, device="cpu")
    calls: list[int] = []
    partial, failures = refeature_corpus(path, probe_spec=_SPEC, pool_config=config, row_descriptors=False, limit=1)
    assert partial is None and not failures
    assert len(ResultStore(refeature_checkpoint(path))) == 1
    assert pq.read_table(path).column("probe_final_loss").to_pylist() == [-1.0] * 3  # untouched until complete

    table, failures = refeature_corpus(
        path, probe_spec=_SPEC, pool_config=config, row_descriptors=False, on_progress=lambda d, t: calls.append(t)
    )
    assert not failures and set(calls) == {2}  # resumed: only the two missing runs were computed
    stored = pq.read_table(path)
    assert stored.equals(table)
    assert stored.column("score").to_pylist() == [40.0, 41.0, 42.0]
    assert stored.column("loss_curve").to_pylist() == [[1.0, 0.5]] * 3
    assert all(v > 0 for v in stored.column("probe_final_loss").to_pylist())
    assert stored.column("num_rows").to_pylist() == [-7.0] * 3  # per-row descriptors kept on request
    for name in [*PROBE_FEATURES, *DATASET_PROBE_FEATURES, *HP_FEATURES, "base_answer_match", "high_loss_share"]:
        assert name in stored.column_names
    noisy, clean = stored.column("base_answer_match").to_pylist()[1], stored.column("base_answer_match").to_pylist()[0]
    assert noisy < clean


def test_refeature_recomputes_row_descriptors_by_default(ray_session: None, tmp_path: Path) -> None:
    path = tmp_path / "corpus.parquet"
    _stale_corpus(path, 1)
    protocol = tmp_path / "corpus.parquet.protocol.json"
    protocol.write_text(json.dumps({"descriptors_version": 1, "probe": {"min_steps": 7}, "ground_truth": {"b": 1}}))
    table, _ = refeature_corpus(path, probe_spec=_SPEC, pool_config=PoolConfig(num_workers=1, device="cpu"))
    assert table is not None
    assert table.column("num_rows").to_pylist() == [40.0]
    assert set(STATIC_FEATURES) <= set(table.column_names)
    # The recorded protocol is the refresh's now: descriptors, probe and dataset probe; the ground truth's is kept.
    assert json.loads(protocol.read_text()) == {
        "descriptors_version": DESCRIPTORS_VERSION,
        "descriptor_sample_size": DESCRIPTOR_SAMPLE_SIZE,
        "probe": _SPEC.model_dump(mode="json"),
        "dataset_probe": DatasetProbeSpec().model_dump(mode="json"),
        "ground_truth": {"b": 1},
    }


def test_refeature_of_row_descriptors_only_keeps_everything_else_and_updates_the_protocol(
    ray_session: None, tmp_path: Path
) -> None:
    path = tmp_path / "corpus.parquet"
    _stale_corpus(path, 2)
    protocol = tmp_path / "corpus.parquet.protocol.json"
    protocol.write_text(json.dumps({"descriptors_version": 1, "probe": {"min_steps": 7}, "ground_truth": {"b": 1}}))
    table, failures = refeature_corpus(
        path, pool_config=PoolConfig(num_workers=1, device="cpu"), only_row_descriptors=True
    )
    assert table is not None and not failures
    assert len(ResultStore(refeature_checkpoint(path, only_row_descriptors=True))) == 2
    assert table.column("num_rows").to_pylist() == [40.0, 40.0]  # recomputed from the regenerated data
    assert set(ROW_FEATURES) <= set(table.column_names)
    assert table.column("probe_final_loss").to_pylist() == [-1.0] * 2  # the probe was not rerun
    assert not set(MODEL_FEATURES) & set(table.column_names)  # no model pass
    recorded = json.loads(protocol.read_text())
    assert recorded == {
        "descriptors_version": DESCRIPTORS_VERSION,
        "descriptor_sample_size": DESCRIPTOR_SAMPLE_SIZE,
        "probe": {"min_steps": 7},  # the probes were kept, and so is their protocol
        "ground_truth": {"b": 1},
    }
    with pytest.raises(ValueError, match="contradict"):
        refeature_corpus(path, row_descriptors=False, only_row_descriptors=True)


def test_refeature_refuses_a_row_whose_spec_does_not_match_its_id(ray_session: None, tmp_path: Path) -> None:
    path = tmp_path / "corpus.parquet"
    _stale_corpus(path, 1)
    table = pq.read_table(path)
    pq.write_table(table.set_column(0, "candidate_id", pa.array(["not-the-hash"])), path)
    with pytest.raises(ValueError, match="hashes to"):
        refeature_corpus(path, probe_spec=_SPEC, pool_config=PoolConfig(num_workers=1, device="cpu"))
