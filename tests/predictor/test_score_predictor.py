"""The predictor: metadataset loading and feature choice, training, early stopping and conformal intervals."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from tests._harness.metadatasets import FAST, synthetic_corpus, synthetic_metadataset
from tuneahead_ray.features import CORPUS_FEATURES
from tuneahead_ray.predictor import (
    CORPUS_EXCLUDED,
    MetadatasetError,
    PredictorConfig,
    ScorePredictor,
    conformal_quantile,
    feature_columns,
    interval_coverage,
    load_metadataset,
    regression_metrics,
)
from tuneahead_ray.predictor._score_predictor import inner_folds


@pytest.fixture(scope="module")
def csv_path(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("meta") / "runs.csv"
    synthetic_metadataset(500, seed=1).to_csv(path, index=False)
    return path


def test_load_metadataset_reads_csv_and_remembers_the_file(csv_path) -> None:
    table = load_metadataset(csv_path, target="y")
    assert list(table.columns) == ["x1", "x2", "noise", "y"]
    assert table.attrs["source"] == str(csv_path)


@pytest.mark.parametrize(
    "content, suffix, target, message",
    [
        ("", ".csv", None, "the file is empty"),
        ("x1,y\n", ".csv", None, "no rows"),
        ("x1,z\n1,2\n", ".csv", "y", "no target column 'y'"),
        ("x1,y\n1,a\n", ".csv", "y", "target column 'y' is not numeric"),
        ("x1,y\n1,\n", ".csv", "y", "target column 'y' has 1 missing"),
        ("x1,y\n1,2\n", ".txt", None, "unsupported file type '.txt'"),
        ('{"x1": 1, "y": 2}\nnot json\n{"x1": 3, "y": 4}\n', ".jsonl", None, "line 2: invalid JSON"),
    ],
)
def test_load_metadataset_errors_name_the_file_and_column(tmp_path, content, suffix, target, message) -> None:
    path = tmp_path / f"bad{suffix}"
    path.write_text(content)
    with pytest.raises(MetadatasetError, match=message) as err:
        load_metadataset(path, target)
    assert str(path) in str(err.value)


def test_load_metadataset_missing_file(tmp_path) -> None:
    with pytest.raises(MetadatasetError, match="no such file"):
        load_metadataset(tmp_path / "absent.parquet")


def test_jsonl_checkpoint_with_a_torn_last_line_is_read_without_it(tmp_path) -> None:
    path = tmp_path / "corpus.parquet.jsonl"
    rows = [json.dumps({"x1": i, "y": 2.0 * i}) for i in range(3)]
    path.write_text("\n".join(rows) + '\n{"x1": 3, "y"')
    table = load_metadataset(path, "y")
    assert table["x1"].tolist() == [0, 1, 2]
    assert path.read_text().endswith('"y"')  # the file being written is left alone


def test_feature_columns_skips_target_drop_text_lists_and_corpus_exclusions() -> None:
    table = pd.DataFrame(
        {
            "run": ["a", "b"],
            "x1": [1.0, 2.0],
            "flag": [True, False],
            "curve": [[1.0], [2.0]],
            "data_label_noise": [0.1, 0.2],
            "gain": [0.5, 0.1],
            "proxy_score": [40.0, 41.0],
            "extra": [3, 4],
            "y": [1.0, 2.0],
        }
    )
    assert feature_columns(table, "y") == ["x1", "flag", "extra"]
    assert feature_columns(table, "y", drop=["extra"]) == ["x1", "flag"]
    with pytest.raises(MetadatasetError, match="cannot drop missing column.*'nope'"):
        feature_columns(table, "y", drop=["nope"])
    with pytest.raises(MetadatasetError, match="no numeric feature columns"):
        feature_columns(table[["run", "gain", "y"]], "y")


def test_corpus_features_are_exactly_what_feature_columns_keeps_of_a_corpus() -> None:
    corpus = synthetic_corpus(20)
    assert set(feature_columns(corpus, "score")) == set(CORPUS_FEATURES)
    assert not [name for name in CORPUS_FEATURES if name.startswith(("data_", "proxy_")) or name in CORPUS_EXCLUDED]


def test_predictor_learns_arbitrary_columns_and_beats_the_train_mean(csv_path) -> None:
    table = load_metadataset(csv_path, "y")
    test = synthetic_metadataset(1000, seed=2)
    predictor = ScorePredictor(config=FAST).fit(table, "y")
    assert predictor.features == ["x1", "x2", "noise"]
    rmse = regression_metrics(test["y"], predictor.predict(test))["rmse"]
    mean_rmse = regression_metrics(test["y"], np.full(len(test), table["y"].mean()))["rmse"]
    assert rmse < 0.4 * mean_rmse
    assert 0 < predictor.metrics["rounds"] < FAST.max_rounds
    assert predictor.metrics["n_train"] == 500


def test_a_non_finite_probe_is_predicted_from_the_training_runs_whose_probe_diverged() -> None:
    # The trees never saw a NaN probe feature (LightGBM would read it as 0: a perfect loss); the runs whose probe
    # blew up tell what a diverged probe scores.
    table = synthetic_metadataset(400, seed=8).rename(columns={"x1": "probe_final_loss", "x2": "hp_log10_lr"})
    blown = np.arange(len(table)) % 8 == 0
    table["probe_diverged"] = blown.astype(float)
    table.loc[blown, "y"] = np.linspace(0.0, 40.0, blown.sum())
    predictor = ScorePredictor(config=FAST).fit(table, "y")
    assert predictor.metrics["diverged_probe_runs"] == blown.sum()
    assert predictor.metrics["diverged_probe_score"] == pytest.approx(20.0)
    rows = table.iloc[[1, 1, 1]].copy()
    rows["probe_final_loss"] = [np.nan, np.nan, 0.0]
    rows["probe_diverged"] = [1.0, 0.0, 1.0]  # stopped at a NaN loss; NaN without divergence; a finite blow-up
    regressor = predictor.booster.predict(predictor.matrix(rows))
    predicted = predictor.predict(rows)
    lower, upper = predictor.predict_interval(rows)
    assert predicted[0] == pytest.approx(20.0) and lower[0] <= 2.0 and upper[0] >= 38.0
    assert predicted[1:] == pytest.approx(regressor[1:])
    # A training table with NaN probes teaches the trees what NaN means: no stand-in then.
    table.loc[blown, "probe_final_loss"] = np.nan
    assert "diverged_probe_score" not in ScorePredictor(config=FAST).fit(table, "y").metrics


@pytest.mark.parametrize("method", ["cv", "cv-normalized", "split"])
def test_interval_covers_about_the_level_on_fresh_data(method) -> None:
    config = FAST.model_copy(update={"interval_method": method, "novelty": False})  # the method alone
    predictor = ScorePredictor(config=config).fit(synthetic_metadataset(600, seed=3), "y")
    test = synthetic_metadataset(2000, seed=4)
    lower, upper = predictor.predict_interval(test)
    assert 0.80 <= interval_coverage(test["y"].to_numpy(), lower, upper) <= 0.97
    widths = upper - lower
    assert np.all(widths > 0) and (np.ptp(widths) > 1e-6) == (method == "cv-normalized")


def test_normalized_interval_is_narrow_where_the_noise_is_small() -> None:
    table = synthetic_metadataset(800, seed=6)
    table["y"] += np.where(table["x2"] > 0, 4.0, 0.0) * np.random.default_rng(0).normal(size=len(table))
    config = FAST.model_copy(update={"interval_method": "cv-normalized", "novelty": False})
    predictor = ScorePredictor(config=config).fit(table, "y")
    test = synthetic_metadataset(2000, seed=7)
    test["y"] += np.where(test["x2"] > 0, 4.0, 0.0) * np.random.default_rng(1).normal(size=len(test))
    lower, upper = predictor.predict_interval(test)
    quiet = test["x2"].to_numpy() < 0
    assert np.mean(upper - lower, where=quiet) < 0.5 * np.mean(upper - lower, where=~quiet)
    assert 0.80 <= interval_coverage(test["y"].to_numpy(), lower, upper) <= 0.97


def test_conformal_quantile_is_the_finite_sample_rank() -> None:
    residuals = np.arange(1.0, 10.0)  # 9 residuals: rank ceil(10 * 0.9) = 9
    assert conformal_quantile(-residuals, 0.9) == 9.0
    assert conformal_quantile(residuals, 0.5) == 5.0
    assert math.isinf(conformal_quantile(residuals[:5], 0.9))


def test_predicting_rows_without_a_training_feature_names_the_column() -> None:
    predictor = ScorePredictor(config=FAST).fit(synthetic_metadataset(200), "y")
    with pytest.raises(MetadatasetError, match="missing feature column.*'x2'"):
        predictor.predict(synthetic_metadataset(5).drop(columns="x2"))


def test_training_needs_enough_rows() -> None:
    with pytest.raises(MetadatasetError, match="5 rows"):
        ScorePredictor(config=FAST).fit(synthetic_metadataset(5), "y")


@pytest.mark.parametrize("top_k, kept", [(2, ["x1", "x2"]), (1, None)])
def test_shap_selection_keeps_the_top_features_only_when_that_helps(top_k, kept) -> None:
    rng = np.random.default_rng(0)
    table = synthetic_metadataset(600, seed=5)
    table = table.assign(**{f"junk{i}": rng.normal(size=len(table)) for i in range(8)})
    predictor = ScorePredictor(config=FAST.model_copy(update={"shap_top_k": top_k})).fit(table, "y")
    helped = predictor.metrics["inner_rmse_top_k"] < predictor.metrics["inner_rmse_all_features"]
    assert helped == (kept is not None)  # x1 alone loses the sine of x2: worse than all features
    assert predictor.features == (kept or feature_columns(table, "y"))


def test_monotone_constraint_makes_predictions_monotone() -> None:
    config = FAST.model_copy(update={"monotone": {"x1": 1}})
    predictor = ScorePredictor(config=config).fit(synthetic_metadataset(400), "y")
    grid = pd.DataFrame({"x1": np.linspace(-2, 2, 50), "x2": 0.3, "noise": 0.0})
    assert np.all(np.diff(predictor.predict(grid)) >= 0)
    with pytest.raises(MetadatasetError, match="monotone constraint on non-feature column.*'x9'"):
        ScorePredictor(config=FAST.model_copy(update={"monotone": {"x9": 1}})).fit(synthetic_metadataset(50), "y")


def test_grouped_inner_folds_never_split_a_group() -> None:
    groups = np.repeat(np.array(["a", "b", "c"]), 10)
    folds = inner_folds(len(groups), groups, folds=5, seed=0)
    assert len(folds) == 3
    for train, valid in folds:
        assert not set(groups[train]) & set(groups[valid])


def test_group_column_calibrates_on_unseen_groups() -> None:
    table = synthetic_metadataset(300).assign(family=np.repeat(["a", "b", "c", "d", "e", "f"], 50))
    config = FAST.model_copy(update={"group": "family"})
    predictor = ScorePredictor(["x1", "x2", "noise"], config).fit(table, "y")
    assert predictor.metrics["calibration_rows"] == 300
    with pytest.raises(MetadatasetError, match="no group column 'fam'"):
        ScorePredictor(["x1"], FAST.model_copy(update={"group": "fam"})).fit(table, "y")


def test_search_space_is_tuned_on_inner_folds_and_recorded() -> None:
    config = FAST.model_copy(update={"search_space": {"num_leaves": [2, 15], "min_child_samples": [5]}})
    table = synthetic_metadataset(300).assign(y=lambda t: 5 * t["x1"] * t["x2"])
    predictor = ScorePredictor(config=config).fit(table, "y")
    assert predictor.metrics["tuned_num_leaves"] == 15  # stumps (additive) cannot fit an interaction
    assert predictor.metrics["tuned_min_child_samples"] == 5
    with pytest.raises(ValueError, match="search_space"):
        PredictorConfig(search_space={"max_rounds": [10]})
