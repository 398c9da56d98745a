"""The feature protocol travels from a corpus to the predictor trained on it, and a screening whose grid computes
features otherwise is told which fields differ (no Ray: the check runs when the predictors load)."""

from __future__ import annotations

import argparse
import json

import pytest

from tests._harness.metadatasets import FAST, synthetic_metadataset
from tuneahead_ray.features import feature_protocol, protocol_mismatches, protocol_path, read_protocol
from tuneahead_ray.predictor import MetadatasetError, ScorePredictor, read_card, save_predictor
from tuneahead_ray.predictor.cli import add_commands
from tuneahead_ray.probe import DatasetProbeSpec, ProbeSpec
from tuneahead_ray.screening import load_grid, load_predictors
from tuneahead_ray.testbed import DataSpec, write_dataset

PROTOCOL = feature_protocol(ProbeSpec(), DatasetProbeSpec(), ground_truth={"benchmark": {"kind": "testbed"}})


def _train(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="tuneahead-ray")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["predictor", "train", *argv])
    return args.func(args)


def _table(tmp_path, name: str, protocol: dict | None):
    path = tmp_path / name
    synthetic_metadataset(80, seed=len(name)).to_csv(path, index=False)
    if protocol is not None:
        protocol_path(path).write_text(json.dumps(protocol))
    return path


def test_the_card_records_the_training_datas_protocol_without_its_ground_truth(tmp_path, capsys) -> None:
    data = _table(tmp_path, "corpus.csv", PROTOCOL)
    assert read_protocol(data) == {k: v for k, v in PROTOCOL.items() if k != "ground_truth"}
    assert _train("--data", str(data), "--target", "y", "--out", str(tmp_path / "model")) == 0
    assert read_card(tmp_path / "model").feature_protocol == read_protocol(data)
    # Refit on the corpus plus outcomes that record no protocol: the recorded one is kept.
    outcomes = _table(tmp_path, "outcomes.csv", None)
    argv = ["--incremental", "--data", str(outcomes), "--target", "y", "--out", str(tmp_path / "model")]
    assert _train(*argv) == 0
    assert read_card(tmp_path / "model").feature_protocol == read_protocol(data)


def test_training_or_refitting_on_data_of_another_protocol_is_refused(tmp_path, capsys) -> None:
    other = feature_protocol(ProbeSpec(max_steps=50), DatasetProbeSpec())
    first, second = _table(tmp_path, "a.csv", PROTOCOL), _table(tmp_path, "b.csv", other)
    with pytest.raises(MetadatasetError, match=r"different feature protocols \(probe\.max_steps: 100 vs 50\)"):
        _train("--data", str(first), "--data", str(second), "--target", "y", "--out", str(tmp_path / "model"))
    assert _train("--data", str(first), "--target", "y", "--out", str(tmp_path / "model")) == 0
    with pytest.raises(MetadatasetError, match=r"another feature protocol .* \(probe\.max_steps: 100 vs 50\)"):
        _train("--incremental", "--data", str(second), "--target", "y", "--out", str(tmp_path / "model"))


def test_only_the_fields_the_features_read_are_compared() -> None:
    used = feature_protocol(ProbeSpec(max_steps=50), DatasetProbeSpec.model_validate({"hp": {"max_steps": 30}}))
    assert protocol_mismatches(None, used, ["probe_final_loss"]) == []  # nothing recorded, nothing to compare
    assert protocol_mismatches(PROTOCOL, used, ["num_rows", "hp_log10_lr"]) == []  # no probe feature read
    assert [m.split(":")[0] for m in protocol_mismatches(PROTOCOL, used, ["probe_final_loss"])] == ["probe.max_steps"]
    names = [m.split(":")[0] for m in protocol_mismatches(PROTOCOL, used, ["dataset_probe_final_loss"])]
    assert names == ["dataset_probe.hp.max_steps"]


def test_a_grid_probing_otherwise_than_the_corpus_is_told_what_differs(tmp_path) -> None:
    table = synthetic_metadataset(120, seed=1).rename(columns={"x1": "probe_final_loss", "x2": "num_rows"})
    predictor = ScorePredictor(["probe_final_loss", "num_rows"], FAST).fit(table, "y")
    save_predictor(predictor, tmp_path / "model", read_protocol(_table(tmp_path, "corpus.csv", PROTOCOL)))
    write_dataset(DataSpec(size=20, seed=1), tmp_path / "d.jsonl")
    body = "datasets: [d.jsonl]\npredictor: model\nthreshold: 50\npolicy: threshold\n"
    (tmp_path / "same.yaml").write_text(body)
    (tmp_path / "other.yaml").write_text(body + "probe: {max_steps: 50}\n")
    same, _ = load_grid(tmp_path / "same.yaml")
    assert load_predictors(same, tmp_path).protocol_mismatches == []
    other, _ = load_grid(tmp_path / "other.yaml")
    (mismatch,) = load_predictors(other, tmp_path).protocol_mismatches
    assert mismatch.startswith("probe.max_steps: 100 in the predictor's training data, 50 here")


def test_predict_warns_when_the_feature_file_was_computed_otherwise(tmp_path, capsys) -> None:
    table = synthetic_metadataset(120, seed=1).rename(columns={"x1": "probe_final_loss", "x2": "num_rows"})
    predictor = ScorePredictor(["probe_final_loss", "num_rows"], FAST).fit(table, "y")
    save_predictor(predictor, tmp_path / "model", read_protocol(_table(tmp_path, "corpus.csv", PROTOCOL)))
    rows = tmp_path / "rows.csv"
    table.head(3).to_csv(rows, index=False)
    parser = argparse.ArgumentParser(prog="tuneahead-ray")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["predict", "--model-dir", str(tmp_path / "model"), "--features", str(rows)])
    assert args.func(args) == 0
    assert "warning" not in capsys.readouterr().err  # no protocol recorded beside the rows: nothing to compare
    protocol_path(rows).write_text(json.dumps(feature_protocol(ProbeSpec(interval=5), DatasetProbeSpec())))
    assert args.func(args) == 0
    assert "probe.interval: 20 in the predictor's training data, 5 here" in capsys.readouterr().err


def test_a_grid_corpus_takes_its_dataset_probe_protocol_from_its_dataset_probe_checkpoint(tmp_path) -> None:
    corpus = tmp_path / "corpus.parquet"  # a grid's corpus records the probe only; its dataset probes beside it
    protocol_path(corpus).write_text(json.dumps(feature_protocol(ProbeSpec())))
    assert protocol_mismatches(read_protocol(corpus), PROTOCOL, ["dataset_probe_final_loss"]) == []  # unknown
    probes = feature_protocol(ProbeSpec(), DatasetProbeSpec.model_validate({"hp": {"max_steps": 30}}))
    protocol_path(tmp_path / "corpus.dataset_probes.parquet").write_text(json.dumps(probes))
    assert read_protocol(corpus)["dataset_probe"] == probes["dataset_probe"]
    (mismatch,) = protocol_mismatches(read_protocol(corpus), PROTOCOL, ["dataset_probe_final_loss"])
    assert mismatch.startswith("dataset_probe.hp.max_steps: 30")


def test_serve_refuses_a_probe_override_that_contradicts_the_models_protocol(tmp_path) -> None:
    from tuneahead_ray.serve import ServeConfig, bind_app

    table = synthetic_metadataset(120, seed=1).rename(columns={"x1": "probe_final_loss", "x2": "num_rows"})
    predictor = ScorePredictor(["probe_final_loss", "num_rows"], FAST).fit(table, "y")
    save_predictor(predictor, tmp_path / "model", read_protocol(_table(tmp_path, "corpus.csv", PROTOCOL)))
    (tmp_path / "data").mkdir()
    config = ServeConfig(model_dir=tmp_path / "model", data_root=tmp_path / "data", probe={"max_steps": 50})
    with pytest.raises(ValueError, match=r"probe\.max_steps: 100 in the model's training data, 50\.0 in the serve"):
        bind_app(config)
    assert bind_app(config.model_copy(update={"probe": {"max_steps": 100}})) is not None
