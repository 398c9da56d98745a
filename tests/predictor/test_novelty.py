"""Novelty: a candidate unlike the training runs scores high, names the features that make it so, and gets a
wider interval that still covers it; in-distribution intervals stay as they were. Saved and loaded exactly, and a
tampered or pickled novelty file is refused."""

from __future__ import annotations

import io
import json
from typing import get_args

import numpy as np
import pytest
from pydantic import ValidationError

from tests._harness.metadatasets import FAST, synthetic_corpus, synthetic_metadataset
from tuneahead_ray.features import FEATURE_GROUPS
from tuneahead_ray.predictor import (
    CARD_FILE,
    FULL_GROUPS,
    NOVELTY_FILE,
    ModelCard,
    ModelStoreError,
    PredictorConfig,
    ScorePredictor,
    interval_coverage,
    load_predictor,
    save_predictor,
)
from tuneahead_ray.predictor._score_predictor import NoveltyGroup

FULL_FEATURES = [name for group in FULL_GROUPS for name in FEATURE_GROUPS[group]]


def _beyond(n: int, seed: int, low: float = 3.0, high: float = 4.0):
    """Runs past the training range of x1 (-2..2), where y keeps rising: trees predict flat there and miss."""
    table = synthetic_metadataset(n, seed=seed)
    table["x1"] = np.random.default_rng(seed).uniform(low, high, n)
    table["y"] = 50 + 5 * table["x1"] + 3 * np.sin(2 * table["x2"]) + np.random.default_rng(seed + 1).normal(size=n)
    return table


@pytest.fixture(scope="module")
def fitted() -> tuple[ScorePredictor, ScorePredictor]:
    table = synthetic_metadataset(600, seed=3)
    plain = ScorePredictor(config=FAST.model_copy(update={"novelty": False})).fit(table, "y")
    return ScorePredictor(config=FAST).fit(table, "y"), plain


def test_novelty_is_about_one_in_distribution_and_high_beyond_it(fitted) -> None:
    predictor, _ = fitted
    inside = synthetic_metadataset(500, seed=4)
    novelty, novel, drivers = predictor.novelty_of(predictor.matrix(inside))
    assert 0.7 < np.median(novelty) < 1.3 and novel.mean() < 0.2
    far, far_novel, far_drivers = predictor.novelty_of(predictor.matrix(_beyond(200, seed=5)))
    assert far.min() > np.quantile(novelty, 0.9) and far_novel.all()
    assert all(names[0] == "x1" for names in far_drivers)  # the feature beyond every training run
    assert sum(bool(names) for names in drivers) < 0.05 * len(inside)


def test_intervals_widen_beyond_the_corpus_and_stay_in_distribution(fitted) -> None:
    predictor, plain = fitted
    inside = synthetic_metadataset(2000, seed=6)
    lower, upper = predictor.predict_interval(inside)
    plain_lower, plain_upper = plain.predict_interval(inside)
    assert np.mean(upper - lower) <= 1.1 * np.mean(plain_upper - plain_lower)
    assert 0.85 <= interval_coverage(inside["y"].to_numpy(), lower, upper) <= 0.97
    beyond = _beyond(300, seed=7, low=2.0, high=2.5)  # just past the edge
    lower, upper = predictor.predict_interval(beyond)
    plain_lower, plain_upper = plain.predict_interval(beyond)
    novelty, novel, _ = predictor.novelty_of(predictor.matrix(beyond))
    widths, plain_widths = upper - lower, plain_upper - plain_lower
    assert novel.mean() > 0.5 and np.all(widths >= plain_widths - 1e-9)
    assert widths[novel].mean() > 1.1 * plain_widths[novel].mean()
    # By default intervals widen where candidates are flagged novel (the level quantile of in-sample novelty).
    bins = predictor.novelty_bins
    assert bins.threshold == bins.flag == predictor.metrics["novelty_threshold"]
    usual = novelty <= bins.threshold
    assert usual.any()
    np.testing.assert_allclose(widths[usual], plain_widths[usual], rtol=1e-9)
    truth = beyond["y"].to_numpy()
    # Wider, but only as wide as held-out clusters of training runs were wrong: far extrapolation stays uncovered.
    assert interval_coverage(truth, lower, upper) > interval_coverage(truth, plain_lower, plain_upper) + 0.03


def test_without_novelty_nothing_is_scored(fitted) -> None:
    _, plain = fitted
    novelty, novel, drivers = plain.novelty_of(plain.matrix(synthetic_metadataset(5, seed=1)))
    assert np.isnan(novelty).all() and not novel.any() and drivers == [[]] * 5
    assert "novelty_threshold" not in plain.metrics


def test_novelty_round_trips_through_the_store(tmp_path, fitted) -> None:
    predictor, _ = fitted
    card = save_predictor(predictor, tmp_path / "model")
    assert card.novelty is not None and card.novelty.threshold == predictor.novelty_bins.threshold
    assert card.novelty.flag == predictor.novelty_bins.flag and card.novelty.columns is None  # every feature
    loaded, _ = load_predictor(tmp_path / "model")
    rows = _beyond(50, seed=9)
    np.testing.assert_allclose(loaded.predict_interval(rows), predictor.predict_interval(rows), rtol=0, atol=1e-12)
    x = predictor.matrix(rows)
    np.testing.assert_allclose(loaded.novelty_of(x)[0], predictor.novelty_of(x)[0], rtol=0, atol=1e-12)


def _rewrite_card(directory, **update) -> None:
    card = ModelCard.model_validate_json((directory / CARD_FILE).read_text())
    card = card.model_copy(update=update)
    card = card.model_copy(update={"card_sha256": card.content_sha256()})
    (directory / CARD_FILE).write_text(card.model_dump_json())


def test_a_tampered_or_pickled_novelty_file_is_refused(tmp_path, fitted) -> None:
    import hashlib

    directory = tmp_path / "model"
    save_predictor(fitted[0], directory)
    path = directory / NOVELTY_FILE
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ModelStoreError, match=f"{NOVELTY_FILE}: sha256 differs from the card's"):
        load_predictor(directory)
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"x": 1}], dtype=object), allow_pickle=True)  # a pickle inside an .npy
    path.write_bytes(buffer.getvalue())
    files = json.loads((directory / CARD_FILE).read_text())["files"]
    _rewrite_card(directory, files={**files, NOVELTY_FILE: hashlib.sha256(buffer.getvalue()).hexdigest()})
    with pytest.raises(ModelStoreError, match=f"{NOVELTY_FILE}: not a NumPy array file"):
        load_predictor(directory)


def test_widening_can_start_below_the_novel_flag() -> None:
    config = FAST.model_copy(update={"novelty_widen_from": 0.75})
    predictor = ScorePredictor(config=config).fit(synthetic_metadataset(600, seed=3), "y")
    bins = predictor.novelty_bins
    assert bins.threshold < bins.flag == predictor.metrics["novelty_threshold"]
    assert bins.threshold == predictor.metrics["novelty_widen_threshold"]
    novelty = np.array([bins.threshold, (bins.threshold + bins.flag) / 2, bins.flag * 2])
    assert bins.half_widths(novelty)[0] == 0 and np.all(bins.half_widths(novelty)[1:] > 0)


def test_a_version_3_card_flags_novelty_where_its_bins_start(tmp_path) -> None:
    config = FAST.model_copy(update={"novelty_widen_from": 0.75})
    predictor = ScorePredictor(config=config).fit(synthetic_metadataset(600, seed=3), "y")
    directory = tmp_path / "model"
    card = save_predictor(predictor, directory)
    _rewrite_card(directory, card_version=3, novelty=card.novelty.model_copy(update={"flag": None}))
    loaded, _ = load_predictor(directory)
    assert loaded.novelty_bins.flag == loaded.novelty_bins.threshold == predictor.novelty_bins.threshold
    x = predictor.matrix(_beyond(50, seed=9))
    assert np.array_equal(loaded.novelty_of(x)[1], predictor.novelty_of(x)[0] > predictor.novelty_bins.threshold)


def test_a_version_1_card_without_novelty_still_loads(tmp_path, fitted) -> None:
    _, plain = fitted
    save_predictor(plain, tmp_path / "model")
    _rewrite_card(tmp_path / "model", card_version=1)
    loaded, card = load_predictor(tmp_path / "model")
    assert card.card_version == 1 and card.novelty is None and loaded.novelty is None
    rows = synthetic_metadataset(20, seed=2)
    np.testing.assert_allclose(loaded.predict_interval(rows), plain.predict_interval(rows), rtol=0, atol=1e-12)


def test_a_cluster_of_nearly_every_run_calibrates_on_the_out_of_fold_residuals() -> None:
    # 74 runs alike and one far away: k-means splits off the one, so holding out the rest leaves one run to refit
    # on (LightGBM cannot bag a single row). The out-of-fold residuals calibrate instead of failing.
    table = synthetic_metadataset(75, seed=9)
    table.loc[:73, "x1"] = 0.0
    table.loc[74, ["x1", "x2", "noise"]] = [1e3, 1e3, 1e3]
    predictor = ScorePredictor(config=FAST.model_copy(update={"seed": 2})).fit(table, "y")
    assert predictor.novelty_bins is not None
    novelty, novel, _ = predictor.novelty_of(predictor.matrix(table.iloc[[0, 74]]))
    assert novelty[1] > novelty[0] and novel[1]


@pytest.fixture(scope="module")
def corpus_predictor() -> ScorePredictor:
    return ScorePredictor(FULL_FEATURES, FAST).fit(synthetic_corpus(300, seed=0), "score")


def test_novelty_is_measured_on_what_describes_the_dataset(corpus_predictor) -> None:
    predictor = corpus_predictor
    scored = [predictor.features[i] for i in predictor.novelty.columns]
    assert set(scored) == {*FEATURE_GROUPS["static"], *FEATURE_GROUPS["dataset_probe"]}
    rows = synthetic_corpus(40, seed=1)
    novelty = predictor.novelty_of(predictor.matrix(rows))[0]
    far_hp = rows.assign(**{name: rows[name] + 100.0 for name in FEATURE_GROUPS["hp"]})
    np.testing.assert_array_equal(predictor.novelty_of(predictor.matrix(far_hp))[0], novelty)
    far_data = rows.assign(groundedness=rows["groundedness"] + 100.0)
    far, novel, drivers = predictor.novelty_of(predictor.matrix(far_data))
    assert np.all(far > 2 * novelty) and novel.all() and all(names[0] == "groundedness" for names in drivers)


def test_novelty_columns_round_trip_and_a_card_naming_no_feature_is_refused(tmp_path, corpus_predictor) -> None:
    directory = tmp_path / "model"
    card = save_predictor(corpus_predictor, directory)
    assert card.novelty.columns == [corpus_predictor.features[i] for i in corpus_predictor.novelty.columns]
    loaded, _ = load_predictor(directory)
    x = corpus_predictor.matrix(synthetic_corpus(20, seed=2))
    np.testing.assert_allclose(loaded.novelty_of(x)[0], corpus_predictor.novelty_of(x)[0], rtol=0, atol=1e-12)
    _rewrite_card(directory, novelty=card.novelty.model_copy(update={"columns": ["no_such_feature"]}))
    with pytest.raises(ModelStoreError, match="novelty.columns names no feature 'no_such_feature'"):
        load_predictor(directory)
    _rewrite_card(directory, novelty=card.novelty.model_copy(update={"center": card.novelty.center[:-1]}))
    width = len(card.novelty.columns)
    with pytest.raises(ModelStoreError, match=f"novelty center and scale need {width} values each"):
        load_predictor(directory)


def test_novelty_groups_are_the_feature_groups() -> None:
    assert set(get_args(NoveltyGroup)) == set(FEATURE_GROUPS)
    with pytest.raises(ValidationError, match="novelty_groups"):
        PredictorConfig(novelty_groups=("descriptors",))
