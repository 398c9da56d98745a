"""TuneAhead and the baselines on a corpus-shaped table, loss-curve extrapolation, held-out evaluation and the
go/no-go figures."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests._harness.metadatasets import FAST, synthetic_corpus
from tuneahead_ray.predictor import (
    DynamicOnly,
    EarlyStopExtrapolation,
    IntervalModel,
    MetadatasetError,
    ProxyLM,
    StaticOnly,
    StrongProxyLM,
    TrainMean,
    TuneAhead,
    corpus_models,
    cross_validate,
    extrapolate_loss,
    fit_power_law,
    go_no_go,
    regression_metrics,
)


@pytest.fixture(scope="module")
def corpus():
    return synthetic_corpus(400, seed=0)


@pytest.fixture(scope="module")
def fresh():
    return synthetic_corpus(300, seed=1)


@pytest.mark.parametrize("name", list(corpus_models()))
def test_every_model_fits_and_predicts_a_corpus(name, corpus, fresh) -> None:
    model = corpus_models(FAST)[name]().fit(corpus, "score")
    prediction = model.predict(fresh)
    assert prediction.shape == (len(fresh),) and np.isfinite(prediction).all()
    if isinstance(model, IntervalModel):
        lower, upper = model.predict_interval(fresh)
        assert (lower <= prediction).all() and (prediction <= upper).all()


def test_models_read_only_their_own_feature_groups(corpus) -> None:
    static = StaticOnly(FAST).fit(corpus, "score").predictor.features
    assert "near_duplicate_rate" in static and not any(f.startswith(("probe_", "hp_")) for f in static)
    proxy = ProxyLM(FAST).fit(corpus, "score").predictor.features
    assert proxy[:2] == ["proxy_score", "proxy_gain"] and "hp_log10_lr" in proxy
    assert not any(f.startswith("probe_") for f in proxy)
    strong = StrongProxyLM(FAST).fit(corpus, "score").predictor.features
    assert strong[:2] == ["strong_proxy_score", "strong_proxy_gain"] and "proxy_score" not in strong
    dynamic = DynamicOnly(FAST).fit(corpus, "score").predictor.features
    assert "probe_heldout_delta" in dynamic and "dataset_probe_ref_match_delta" in dynamic
    assert not any(f.startswith(("hp_", "near_")) for f in dynamic)
    full = TuneAhead(FAST).fit(corpus, "score").predictor.features
    assert "dataset_probe_heldout_delta" in full and "probe_heldout_delta" in full
    assert not any(f.startswith(("data_", "proxy_", "strong_")) or f in {"score", "gain"} for f in full)


def test_a_corpus_without_the_new_columns_is_still_read(corpus) -> None:
    """A corpus built before the dataset probe and the strong proxy: TuneAhead reads the groups it has, and the
    strong-proxy baseline is left out of the models for it."""
    old = corpus.drop(columns=[c for c in corpus.columns if c.startswith(("dataset_probe_", "strong_proxy_"))])
    full = TuneAhead(FAST).fit(old, "score").predictor.features
    assert not any(f.startswith("dataset_probe_") for f in full) and "probe_heldout_delta" in full
    assert "StrongProxyLM" not in corpus_models(FAST, old.columns)
    assert "StrongProxyLM" in corpus_models(FAST, corpus.columns)


def test_tuneahead_beats_the_baselines_on_the_synthetic_corpus(corpus, fresh) -> None:
    rmse = {
        name: regression_metrics(fresh["score"], make().fit(corpus, "score").predict(fresh))["rmse"]
        for name, make in corpus_models(FAST).items()
    }
    assert rmse["TuneAhead"] < 0.5 * rmse["TrainMean"]
    assert rmse["TuneAhead"] < min(rmse["StaticOnly"], rmse["DynamicOnly"], rmse["EarlyStopExtrapolation"])


def test_power_law_fit_recovers_the_asymptote() -> None:
    rng = np.random.default_rng(0)
    steps = np.arange(1, 101)
    losses = 2.0 * steps**-0.5 + 1.0 + rng.normal(0, 0.01, len(steps))
    law = fit_power_law(losses)
    assert law.c == pytest.approx(1.0, abs=0.05)
    assert law.b == pytest.approx(0.5, abs=0.1)
    assert extrapolate_loss(losses, 5000) == pytest.approx(2.0 * 5000**-0.5 + 1.0, abs=0.05)


def test_power_law_fit_of_a_broken_probe() -> None:
    assert fit_power_law([2.0, float("nan"), float("inf")]) is None
    assert math.isnan(extrapolate_loss([float("nan")] * 10, 100))
    flat = fit_power_law([1.0, 1.0, 1.0, 1.0])
    assert flat(1000.0) == pytest.approx(1.0, abs=1e-6)


def test_early_stop_reads_only_the_probe_part_of_the_loss_curve(corpus, fresh) -> None:
    model = EarlyStopExtrapolation().fit(corpus, "score")
    tampered = fresh.assign(
        loss_curve=[c[:k] + [99.0] * (len(c) - k) for c, k in zip(fresh.loss_curve, fresh.probe_steps, strict=True)]
    )
    np.testing.assert_array_equal(model.predict(tampered), model.predict(fresh))
    broken = fresh.assign(loss_curve=[[float("nan")] * len(c) for c in fresh.loss_curve])
    assert np.isfinite(model.predict(broken)).all()


def test_baselines_name_the_columns_they_lack(corpus) -> None:
    with pytest.raises(MetadatasetError, match="ProxyLM needs column 'proxy_score'"):
        ProxyLM(FAST).fit(corpus.drop(columns="proxy_score"), "score")
    with pytest.raises(MetadatasetError, match="StrongProxyLM needs column 'strong_proxy_base_score'"):
        StrongProxyLM(FAST).fit(corpus.drop(columns="strong_proxy_base_score"), "score")
    with pytest.raises(MetadatasetError, match="EarlyStopExtrapolation needs column.*loss_curve"):
        EarlyStopExtrapolation().fit(corpus.drop(columns="loss_curve"), "score")


def test_cross_validate_scores_every_model_on_the_same_splits(corpus) -> None:
    models = {"TuneAhead": lambda: TuneAhead(FAST), "TrainMean": TrainMean}
    report = cross_validate(corpus, "score", splits=2, test_size=0.25, models=models, return_predictions=True)
    assert [split["n_test"] for split in report["per_split"]] == [100, 100]
    first = report["per_split"][0]
    assert set(first["predictions"]) == {"TuneAhead", "TrainMean"} and set(first["intervals"]) == {"TuneAhead"}
    assert "coverage" in report["mean"]["TuneAhead"] and "coverage" not in report["mean"]["TrainMean"]
    rmse = [split["models"]["TuneAhead"]["rmse"] for split in report["per_split"]]
    assert report["mean"]["TuneAhead"]["rmse"] == pytest.approx(np.mean(rmse))
    assert report["mean"]["TuneAhead"]["rmse"] < report["mean"]["TrainMean"]["rmse"]


def test_grouped_cross_validation_holds_out_whole_families(corpus) -> None:
    report = cross_validate(
        corpus, "score", splits=3, group="family_group", models={"TrainMean": TrainMean}, return_predictions=True
    )
    families = corpus["family_group"].to_numpy()
    for split in report["per_split"]:
        test = np.array(split["test_rows"])
        train = np.setdiff1d(np.arange(len(corpus)), test)
        assert not set(families[test]) & set(families[train])


def test_go_no_go_counts_kept_successes_skipped_failures_and_saved_compute() -> None:
    y_true = np.array([60.0, 58.0, 40.0, 42.0])
    y_pred = np.array([59.0, 54.0, 41.0, 56.0])  # GO: runs 0 and 3
    figures = go_no_go(y_true, y_pred, 55.0, probe_cost=np.full(4, 1.0), full_cost=np.full(4, 10.0))
    assert figures["successes_kept"] == 0.5 and figures["failures_skipped"] == 0.5
    assert figures["go_share"] == 0.5 and figures["success_share"] == 0.5
    assert figures["compute_saved"] == pytest.approx(1 - (4 * 1 + 2 * 9) / 40)
    charged = go_no_go(y_true, y_pred, 55.0, np.full(4, 1.0), np.full(4, 10.0), screen_overhead=np.full(4, 0.5))
    assert charged["compute_saved"] == pytest.approx(1 - (4 * 1 + 4 * 0.5 + 2 * 9) / 40)
