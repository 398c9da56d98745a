"""``predictor train``, ``predictor cv`` and ``predict`` through their parser, on files."""

from __future__ import annotations

import argparse
import json

import pytest

from tests._harness.metadatasets import synthetic_metadataset
from tuneahead_ray.predictor import MetadatasetError, ModelStoreError
from tuneahead_ray.predictor.cli import add_commands


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="tuneahead-ray")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([*argv])
    return args.func(args)


@pytest.fixture(scope="module")
def runs_csv(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("cli") / "runs.csv"
    synthetic_metadataset(150, seed=3).assign(run=lambda t: [f"r{i}" for i in range(len(t))]).to_csv(path, index=False)
    return path


def test_train_then_predict_with_interval_and_drivers(tmp_path, runs_csv, capsys) -> None:
    assert (
        _run(
            "predictor",
            "train",
            "--data",
            str(runs_csv),
            "--target",
            "y",
            "--drop",
            "noise",
            "--out",
            str(tmp_path / "model"),
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["features"] == 2 and summary["interval"]["level"] == 0.9
    features = tmp_path / "new.csv"
    synthetic_metadataset(4, seed=9).assign(run=["a", "b", "c", "d"]).to_csv(features, index=False)
    out = tmp_path / "predictions.json"
    assert (
        _run(
            "predict",
            "--model-dir",
            str(tmp_path / "model"),
            "--features",
            str(features),
            "--id",
            "run",
            "--top-k",
            "2",
            "--out",
            str(out),
        )
        == 0
    )
    rows = json.loads(out.read_text())
    assert [row["run"] for row in rows] == ["a", "b", "c", "d"]
    for row in rows:
        assert row["lower"] < row["prediction"] < row["upper"]
        assert len(row["top"]) == 2 and {t["feature"] for t in row["top"]} == {"x1", "x2"}
        assert isinstance(row["diagnostics"], list)


def test_cv_prints_per_split_and_mean_metrics_with_coverage(runs_csv, capsys) -> None:
    assert _run("predictor", "cv", "--data", str(runs_csv), "--target", "y", "--splits", "2") == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["per_split"]) == 2 and report["test_size"] == 0.28
    assert set(report["mean"]) == {"TuneAhead", "TrainMean"}
    assert 0 <= report["mean"]["TuneAhead"]["coverage"] <= 1
    assert report["mean"]["TuneAhead"]["rmse"] < report["mean"]["TrainMean"]["rmse"]


@pytest.mark.parametrize(
    "argv, error, message",
    [
        (["predictor", "train", "--target", "score", "--out", "m"], MetadatasetError, "no target column 'score'"),
        (["predictor", "cv", "--target", "run"], MetadatasetError, "target column 'run' is not numeric"),
        (["predictor", "cv", "--target", "y", "--drop", "x7"], MetadatasetError, "cannot drop missing column.*'x7'"),
        (["predictor", "cv", "--target", "y", "--group", "fam"], MetadatasetError, "no group column 'fam'"),
    ],
)
def test_bad_table_input_names_the_column(runs_csv, argv, error, message) -> None:
    with pytest.raises(error, match=message) as err:
        _run(*argv[:2], "--data", str(runs_csv), *argv[2:])
    assert isinstance(err.value, ValueError) and str(runs_csv) in str(err.value)


def test_predict_refuses_a_missing_model_and_names_a_missing_feature(tmp_path, runs_csv, capsys) -> None:
    with pytest.raises(ModelStoreError, match="card.json: missing"):
        _run("predict", "--model-dir", str(tmp_path / "none"), "--features", str(runs_csv))
    _run("predictor", "train", "--data", str(runs_csv), "--target", "y", "--out", str(tmp_path / "model"))
    partial = tmp_path / "partial.csv"
    synthetic_metadataset(3).drop(columns="x2").to_csv(partial, index=False)
    with pytest.raises(MetadatasetError, match="partial.csv: missing feature column.*'x2'"):
        _run("predict", "--model-dir", str(tmp_path / "model"), "--features", str(partial))


def test_incremental_training_refits_the_same_model_on_more_rows(tmp_path, runs_csv, capsys) -> None:
    model = str(tmp_path / "model")
    assert _run("predictor", "train", "--data", str(runs_csv), "--target", "y", "--drop", "noise", "--out", model) == 0
    first = json.loads(capsys.readouterr().out)
    more = tmp_path / "more.csv"
    synthetic_metadataset(60, seed=11).assign(run=[f"n{i}" for i in range(60)]).to_csv(more, index=False)
    argv = ["predictor", "train", "--incremental", "--data", str(runs_csv), "--data", str(more), "--target", "y"]
    assert _run(*argv, "--out", model) == 0  # no --drop: the features come from the existing model
    second = json.loads(capsys.readouterr().out)
    assert second["features"] == first["features"] == 2
    assert second["metrics"]["n_train"] == first["metrics"]["n_train"] + 60
    assert second["metrics"]["previous_n_train"] == first["metrics"]["n_train"]
    assert second["training_data_sha256"] != first["training_data_sha256"]
    with pytest.raises(MetadatasetError, match="predicts 'y'"):
        _run("predictor", "train", "--incremental", "--data", str(more), "--target", "noise", "--out", model)
