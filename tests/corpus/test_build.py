"""One corpus run: its ground truth on the benchmark, its probe, its dataset's standardized probe and both proxies."""

from __future__ import annotations

import math

import pytest
import torch

from tuneahead_ray.base_models import default_proxy_dir
from tuneahead_ray.corpus import CorpusSpec, CorpusWorker
from tuneahead_ray.evaluation import TestbedSpec
from tuneahead_ray.features import DATASET_PROBE_FEATURES, PROBE_FEATURES
from tuneahead_ray.probe import ProbeSpec
from tuneahead_ray.schemas import HyperParams
from tuneahead_ray.testbed import DataSpec


@pytest.mark.slow
def test_a_corpus_run_has_its_ground_truth_both_probes_and_both_proxies() -> None:
    torch.set_num_threads(1)
    worker = CorpusWorker(
        proxy_model=str(default_proxy_dir("proxy")),
        strong_proxy_model=str(default_proxy_dir("strong-proxy")),
        benchmark=TestbedSpec(items_per_cell=4),  # 120 items: the machinery, not the ground truth's precision
    )
    spec = CorpusSpec(
        data=DataSpec(size=80, seed=3), hp=HyperParams(lr=3e-3, max_steps=12, batch_size=8, max_seq_len=48)
    )
    row = worker.run(spec, ProbeSpec(min_steps=4, max_steps=4, interval=2, reference_size=16))

    assert row["candidate_id"] == spec.run_id() and row["benchmark_items"] == 120
    assert (row["probe_steps"], row["total_steps"], len(row["loss_curve"])) == (4, 12, 12)
    assert 0 <= row["score"] <= 100 and row["gain"] == pytest.approx(row["score"] - row["base_score"])
    assert all(name in row for name in PROBE_FEATURES)
    assert all(name in row for name in DATASET_PROBE_FEATURES) and row["dataset_probe_seconds"] > 0
    # Each proxy: its fine-tuned score, its own base score (the smaller proxy knows less) and its cost.
    for proxy in ("proxy", "strong_proxy"):
        assert 0 <= row[f"{proxy}_score"] <= 100 and row[f"{proxy}_seconds"] > 0
    assert row["proxy_base_score"] < row["strong_proxy_base_score"] < row["base_score"]
    # The dataset probe does not depend on the candidate's hyperparameters: another lr, the same features.
    other = worker.run(
        spec.model_copy(update={"hp": spec.hp.model_copy(update={"lr": 1e-2})}),
        ProbeSpec(min_steps=4, max_steps=4, interval=2, reference_size=16),
    )
    same = [name for name in DATASET_PROBE_FEATURES if not math.isnan(row[name])]
    assert same and all(other[name] == pytest.approx(row[name], rel=1e-6) for name in same)
    assert other["probe_final_loss"] != row["probe_final_loss"]


def test_a_corpus_worker_without_proxies_leaves_their_columns_empty() -> None:
    torch.set_num_threads(1)
    worker = CorpusWorker(benchmark=TestbedSpec(items_per_cell=1))
    spec = CorpusSpec(data=DataSpec(size=40, seed=1), hp=HyperParams(lr=3e-3, max_steps=4, batch_size=8))
    row = worker.run(spec, ProbeSpec(min_steps=2, max_steps=2, interval=2, reference_size=8))
    assert all(row[f"{p}_{c}"] is None for p in ("proxy", "strong_proxy") for c in ("score", "base_score", "seconds"))


def test_a_corpus_scored_on_another_benchmark_is_not_resumed(tmp_path) -> None:
    """Resuming must not mix ground truths: a corpus whose protocol records the 480-item benchmark is refused."""
    import json

    from tuneahead_ray.corpus import build_corpus
    from tuneahead_ray.corpus._build import ground_truth_protocol
    from tuneahead_ray.features import FeatureProtocolError, feature_protocol
    from tuneahead_ray.probe import DatasetProbeSpec

    (tmp_path / "corpus.parquet.jsonl").write_text(json.dumps({"candidate_id": "old", "score": 40.0}) + "\n")
    older = ground_truth_protocol("default", None, None) | {"benchmark": {"kind": "testbed", "items_per_cell": 16}}
    protocol = feature_protocol(ProbeSpec(), DatasetProbeSpec(), older)
    (tmp_path / "corpus.parquet.protocol.json").write_text(json.dumps(protocol))
    with pytest.raises(FeatureProtocolError, match=r"ground_truth\.benchmark"):
        build_corpus(1, tmp_path)
