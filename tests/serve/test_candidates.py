"""The service's candidate featurizer: the same row as ``tuneahead-ray features``, the dataset probe only for a
model that reads it, computed once per dataset."""

from __future__ import annotations

import pytest
import torch

from tuneahead_ray.features import DATASET_PROBE_FEATURES, PROBE_FEATURES, feature_protocol
from tuneahead_ray.probe import DatasetProbeSpec, ProbeSpec
from tuneahead_ray.schemas import Candidate, DatasetRef, HyperParams
from tuneahead_ray.serve._candidates import CandidateFeaturizer
from tuneahead_ray.testbed import DataSpec, write_dataset

PROBE = {"min_steps": 4, "max_steps": 4, "interval": 2, "reference_size": 8}


@pytest.mark.slow
def test_the_dataset_probe_runs_once_per_dataset_for_a_model_that_reads_it(tmp_path) -> None:
    torch.set_num_threads(1)
    data = DatasetRef(path=write_dataset(DataSpec(size=60, seed=2), tmp_path / "d.jsonl"))

    def candidate(lr: float) -> Candidate:
        return Candidate(model="default", dataset=data, hp=HyperParams(lr=lr, max_steps=20, max_seq_len=48))

    reads = CandidateFeaturizer("default", PROBE, "cpu", model_features=[*PROBE_FEATURES, *DATASET_PROBE_FEATURES])
    calls = []
    dataset_probe = reads.worker.dataset_probe
    reads.worker.dataset_probe = lambda *args: calls.append(args) or dataset_probe(*args)
    first, second = reads.features(candidate(1e-3)), reads.features(candidate(1e-2))
    assert len(calls) == 1  # two candidates, one dataset: one dataset probe
    assert all(first[name] == second[name] or first[name] != first[name] for name in DATASET_PROBE_FEATURES)
    assert first["probe_final_loss"] != second["probe_final_loss"]

    plain = CandidateFeaturizer("default", PROBE, "cpu", model_features=list(PROBE_FEATURES))
    assert not any(name in plain.features(candidate(1e-3)) for name in DATASET_PROBE_FEATURES)


def test_the_featurizer_probes_as_the_models_corpus_did() -> None:
    trained = feature_protocol(ProbeSpec(max_steps=30), DatasetProbeSpec.model_validate({"hp": {"max_steps": 10}}))
    features = [*PROBE_FEATURES, *DATASET_PROBE_FEATURES]
    adopted = CandidateFeaturizer("default", {}, "cpu", model_features=features, protocol=trained)
    assert adopted.spec.max_steps == 30 and adopted.dataset_spec.hp.max_steps == 10
    overridden = CandidateFeaturizer("default", {"min_steps": 25}, "cpu", features, trained).spec
    assert (overridden.min_steps, overridden.max_steps) == (25, 30)
