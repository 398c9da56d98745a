"""The model store: an exact round trip, and refusal of anything tampered with, missing or unknown."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests._harness.metadatasets import FAST, synthetic_metadataset
from tuneahead_ray import __version__
from tuneahead_ray.predictor import (
    CARD_FILE,
    MODEL_FILE,
    NOVELTY_FILE,
    SCALE_FILE,
    ModelStoreError,
    ScorePredictor,
    load_predictor,
    save_predictor,
    table_sha256,
)


@pytest.fixture(scope="module")
def trained() -> tuple[ScorePredictor, object]:
    table = synthetic_metadataset(300, seed=7)
    return ScorePredictor(config=FAST).fit(table, "y"), table


@pytest.fixture
def model_dir(tmp_path, trained):
    save_predictor(trained[0], tmp_path / "model")
    return tmp_path / "model"


def test_round_trip_gives_the_same_predictions_and_interval(model_dir, trained) -> None:
    predictor, table = trained
    loaded, card = load_predictor(model_dir)
    rows = synthetic_metadataset(200, seed=8)
    np.testing.assert_allclose(loaded.predict(rows), predictor.predict(rows), rtol=0, atol=1e-12)
    np.testing.assert_allclose(loaded.predict_interval(rows), predictor.predict_interval(rows), rtol=0, atol=1e-12)
    assert loaded.features == card.features == ["x1", "x2", "noise"]
    assert card.target == "y" and card.package_version == __version__
    assert card.training_data_sha256 == table_sha256(table, ["x1", "x2", "noise", "y"])
    assert card.interval.level == 0.9 and card.interval.quantile == predictor.interval.quantile
    assert card.config == FAST and card.metrics == predictor.metrics
    assert {"lightgbm", "shap", "numpy"} <= set(card.libraries)
    assert sorted(p.name for p in model_dir.iterdir()) == [CARD_FILE, MODEL_FILE, NOVELTY_FILE]  # no pickles


def test_a_model_file_with_one_character_flipped_is_refused(model_dir) -> None:
    path = model_dir / MODEL_FILE
    text = path.read_text()
    index = text.index("leaf_value=") + len("leaf_value=")
    path.write_text(text[:index] + ("9" if text[index] != "9" else "8") + text[index + 1 :])
    with pytest.raises(ModelStoreError, match=f"{MODEL_FILE}: sha256 differs from the card's"):
        load_predictor(model_dir)


def test_an_edited_card_is_refused(model_dir) -> None:
    path = model_dir / CARD_FILE
    card = json.loads(path.read_text())
    card["interval"]["quantile"] = 0.01  # a narrower interval than the model earned
    path.write_text(json.dumps(card))
    with pytest.raises(ModelStoreError, match=f"{CARD_FILE}: the card does not match its card_sha256"):
        load_predictor(model_dir)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / MODEL_FILE).unlink(), f"{MODEL_FILE}: missing"),
        (lambda d: (d / CARD_FILE).unlink(), f"{CARD_FILE}: missing"),
        (lambda d: (d / CARD_FILE).write_text("{"), f"{CARD_FILE}: not JSON"),
        (
            lambda d: (d / CARD_FILE).write_text(
                json.dumps({**json.loads((d / CARD_FILE).read_text()), "card_version": 99})
            ),
            "unknown card version 99",
        ),
        (
            lambda d: (d / CARD_FILE).write_text(json.dumps({**json.loads((d / CARD_FILE).read_text()), "x": 1})),
            "invalid card",
        ),
    ],
)
def test_missing_unreadable_or_unknown_files_are_refused(model_dir, damage, message) -> None:
    damage(model_dir)
    with pytest.raises(ModelStoreError, match=message):
        load_predictor(model_dir)


def test_training_data_hash_is_canonical() -> None:
    table = synthetic_metadataset(50)
    columns = ["x1", "x2", "y"]
    assert table_sha256(table, columns) == table_sha256(table[["y", "x2", "x1"]], ["y", "x1", "x2"])
    changed = table.copy()
    changed.loc[3, "x1"] += 1e-9
    assert table_sha256(changed, columns) != table_sha256(table, columns)
    assert table_sha256(table.iloc[::-1], columns) != table_sha256(table, columns)  # row order counts


def test_a_normalized_interval_round_trips_with_its_verified_scale_model(tmp_path) -> None:
    config = FAST.model_copy(update={"interval_method": "cv-normalized"})
    predictor = ScorePredictor(config=config).fit(synthetic_metadataset(300, seed=7), "y")
    card = save_predictor(predictor, tmp_path / "model")
    assert card.interval.normalized and set(card.files) == {MODEL_FILE, SCALE_FILE, NOVELTY_FILE}
    rows = synthetic_metadataset(100, seed=8)
    loaded, _ = load_predictor(tmp_path / "model")
    np.testing.assert_allclose(loaded.predict_interval(rows), predictor.predict_interval(rows), rtol=0, atol=1e-12)
    scale = tmp_path / "model" / SCALE_FILE
    scale.write_text(scale.read_text().replace("leaf_value=", "leaf_value=1", 1))
    with pytest.raises(ModelStoreError, match=f"{SCALE_FILE}: sha256 differs"):
        load_predictor(tmp_path / "model")
