"""SHAP explanations: additivity, global importance and diagnostics that name what lowers the score."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests._harness.metadatasets import FAST, synthetic_metadataset
from tuneahead_ray.predictor import Contribution, Explainer, ScorePredictor, negative_diagnostics


@pytest.fixture(scope="module")
def duplicates_model() -> ScorePredictor:
    """y falls steeply with near_duplicate_rate and rises with lr_quality; ``noise`` is noise."""
    rng = np.random.default_rng(0)
    n = 600
    table = pd.DataFrame(
        {
            "near_duplicate_rate": rng.uniform(0, 0.6, n),
            "lr_quality": rng.uniform(0, 1, n),
            "noise": rng.normal(size=n),
        }
    )
    table["score"] = 60 - 30 * table["near_duplicate_rate"] + 5 * table["lr_quality"] + rng.normal(0, 0.5, n)
    return ScorePredictor(config=FAST).fit(table, "score")


def test_shap_values_add_up_to_the_prediction_even_with_missing_values() -> None:
    predictor = ScorePredictor(config=FAST).fit(synthetic_metadataset(400), "y")
    rows = synthetic_metadataset(100, seed=1)
    rows.loc[::7, "x2"] = np.nan
    explainer = Explainer(predictor)
    values = explainer.shap_values(rows)
    np.testing.assert_allclose(values.sum(axis=1) + explainer.base_value, predictor.predict(rows), atol=1e-6)
    for explanation in explainer.explain(rows, top_k=2):
        assert explanation.additivity_error < 1e-6
        assert len(explanation.top) == 2
        assert abs(explanation.top[0].contribution) >= abs(explanation.top[1].contribution)


def test_global_importance_ranks_the_signal_first(duplicates_model) -> None:
    rows = pd.DataFrame({"near_duplicate_rate": [0.1, 0.5], "lr_quality": [0.5, 0.5], "noise": [0.0, 0.0]})
    importance = Explainer(duplicates_model).global_importance(rows)
    assert list(importance)[0] == "near_duplicate_rate"
    assert importance["near_duplicate_rate"] > 10 * importance["noise"]


def test_diagnostics_name_the_strongest_negative_driver(duplicates_model) -> None:
    row = pd.DataFrame({"near_duplicate_rate": [0.55], "lr_quality": [0.9], "noise": [0.0]})
    (explanation,) = Explainer(duplicates_model).explain(row)
    assert explanation.diagnostics[0].startswith("near-duplicate rate 0.55 lowers the predicted score by ")
    assert explanation.diagnostics[0].endswith("pp")
    assert not any("lr_quality" in sentence for sentence in explanation.diagnostics)  # it raises the score


def test_negative_diagnostics_order_format_and_fallback_label() -> None:
    contributions = [
        Contribution(feature="a", label="a", value=1.0, contribution=-1.25),
        Contribution(feature="b", label="LoRA rank", value=8.0, contribution=-3.21),
        Contribution(feature="c", label="c", value=float("nan"), contribution=-0.5),
        Contribution(feature="d", label="d", value=2.0, contribution=4.0),
    ]
    assert negative_diagnostics(contributions, count=3) == [
        "LoRA rank 8 lowers the predicted score by 3.2pp",
        "a 1 lowers the predicted score by 1.2pp",
        "c missing lowers the predicted score by 0.5pp",
    ]
