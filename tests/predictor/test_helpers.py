"""The synthetic corpus helper has what the predictor and its baselines read."""

from __future__ import annotations

from tests._harness.metadatasets import FEATURE_GROUPS, synthetic_corpus


def test_synthetic_corpus_has_every_corpus_feature_and_the_baselines_inputs() -> None:
    corpus = synthetic_corpus(20)
    groups = FEATURE_GROUPS
    assert {name for group in groups.values() for name in group} <= set(corpus.columns)
    assert (corpus["probe_steps"] < corpus["total_steps"]).all()
    assert corpus["loss_curve"].map(len).eq(corpus["total_steps"]).all()
