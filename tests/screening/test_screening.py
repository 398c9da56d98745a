"""Screening without Ray: costs and budgets, which candidates get probed, decisions and their reasons, reports."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tuneahead_ray.report import dataset_flags, write_report
from tuneahead_ray.screening import ScreeningResult, budget_seconds, full_run_seconds, full_run_tokens, probe_set
from tuneahead_ray.screening._driver import _decide, _ranked
from tuneahead_ray.screening._grid import Budget, CostModel, GridSpec


def _costs_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "total_tokens_mean": [40.0, 20.0, 20.0],
            "hp_max_seq_len": [32.0, 64.0, 64.0],
            "hp_total_steps": [10.0, 10.0, 20.0],
            "hp_batch_size": [4.0, 8.0, 8.0],
            "probe_seconds": [2.0, np.nan, 1.0],
            "probe_tokens": [100.0, np.nan, 400.0],
        }
    )


def test_full_run_tokens_cut_examples_at_max_seq_len() -> None:
    assert full_run_tokens(_costs_table()).tolist() == [10 * 4 * 32, 10 * 8 * 20, 20 * 8 * 20]


def test_cost_models() -> None:
    table = _costs_table()
    tokens = full_run_tokens(table)
    assert full_run_seconds(table, CostModel(tokens_per_second=100)) == pytest.approx(tokens / 100)
    measured = full_run_seconds(table, CostModel(kind="measured"))
    rates = np.array([2 / 100, np.median([2 / 100, 1 / 400]), 1 / 400])  # the unprobed run gets the median rate
    assert measured == pytest.approx(tokens * rates)


def test_budget_units() -> None:
    costs = np.array([10.0, 20.0, 30.0])
    assert budget_seconds(Budget(gpu_hours=2), costs) == 7200
    assert budget_seconds(Budget(full_runs=3), costs) == pytest.approx(60.0)


def _prescreened(n: int = 6) -> pd.DataFrame:
    predicted = np.array([40.0, 70.0, 55.0, 65.0, 30.0, 60.0])[:n]
    return pd.DataFrame({"prescreen": predicted, "prescreen_lower": predicted - 5, "prescreen_upper": predicted + 5})


class _Predictors:
    prescreen = object()


def test_probe_budget_keeps_the_candidates_most_in_contention() -> None:
    table = _prescreened()
    everything = GridSpec(datasets=["x"], threshold=58)
    assert probe_set(table, everything, _Predictors()).all()
    by_count = probe_set(table, everything.model_copy(update={"probe_budget": 3}), _Predictors())
    assert np.flatnonzero(by_count).tolist() == [1, 3, 5]
    by_share = probe_set(table, everything.model_copy(update={"probe_budget": 0.5}), _Predictors())
    assert by_share.tolist() == by_count.tolist()
    no_threshold = GridSpec(datasets=["x"], policy="top_k", top_k=1, probe_budget=2)
    assert np.flatnonzero(probe_set(table, no_threshold, _Predictors())).tolist() == [1, 3]


def _decision_table() -> pd.DataFrame:
    predicted = np.array([70.0, 50.0, 62.0, 45.0, 80.0])
    return pd.DataFrame(
        {
            "candidate_id": list("abcde"),
            "stage": ["probed", "probed", "probed", "not_probed", "failed"],
            "error": ["", "", "", "", "worker lost 3 times"],
            "predicted": predicted,
            "lower": predicted - 4,
            "upper": predicted + 4,
            "prescreen": predicted,
            "prescreen_lower": predicted - 8,
            "prescreen_upper": predicted + 8,
            "probe_diverged": [False, False, True, False, False],
            "go_cost_s": [10.0, 10.0, 10.0, 10.0, 10.0],
            "novelty": [1.0, 1.1, 0.9, np.nan, np.nan],
            "novel": [False] * 5,
            "novel_features": [""] * 5,
        }
    )


def test_threshold_decisions_and_their_reasons() -> None:
    table = _decision_table()
    _decide(table, GridSpec(datasets=["x"], threshold=60), base_score=47.0, budget=None)
    assert table["decision"].tolist() == ["GO", "NO-GO", "NO-GO", "NO-GO", "NO-GO"]
    reasons = table["reason"].tolist()
    assert "GO under threshold" in reasons[0]
    assert "50.0 < threshold 60" in reasons[1]
    assert "diverged" in reasons[2]  # predicted 62 >= 60, but its probe blew up
    assert reasons[3].startswith("not probed") and "probe failed: worker lost" in reasons[4]


def test_a_decision_on_a_candidate_unlike_the_corpus_says_it_is_uncertain() -> None:
    table = _decision_table()
    table["novel"] = [True, True, False, False, False]
    table["novelty"] = [3.2, 2.5, 0.9, np.nan, np.nan]
    table["novel_features"] = ["probe_grad_norm_max", "", "", "", ""]
    _decide(table, GridSpec(datasets=["x"], threshold=60), base_score=47.0, budget=None)
    reasons = table["reason"].tolist()
    assert (
        reasons[0].startswith("GO under threshold")
        and "unlike the corpus: novelty 3.2; beyond its range in probe_grad_norm_max; interval widened" in reasons[0]
    )
    assert (
        reasons[1] == "predicted 50.0 < threshold 60; uncertain: unlike the corpus (novelty 2.5), the interval "
        "was widened"
    )
    assert "unlike" not in reasons[2]


def test_a_diverged_probe_is_never_go() -> None:
    table = _decision_table()
    table["probe_diverged"] = [True, False, False, False, False]  # the best prediction, but its probe blew up
    _decide(table, GridSpec(datasets=["x"], threshold=60), base_score=47.0, budget=None)
    assert table["decision"].tolist() == ["NO-GO", "NO-GO", "GO", "NO-GO", "NO-GO"]
    assert "diverged" in table["reason"][0]


def test_budgeted_decisions_only_spend_the_budget() -> None:
    table = _decision_table()
    facts = _decide(table, GridSpec(datasets=["x"], policy="expected_gain", budget={"gpu_hours": 1}), 47.0, 15.0)
    assert table["decision"].tolist() == ["GO", "NO-GO", "NO-GO", "NO-GO", "NO-GO"]  # one 10 s run fits in 15 s
    assert facts["cost_used_s"] == 10.0
    assert "diverged" in table["reason"][2] and "outside the budget" in table["reason"][1]


def _result(tmp_path) -> tuple[ScreeningResult, GridSpec]:
    from tuneahead_ray.features import STATIC_FEATURES

    grid = GridSpec(datasets=["x"], threshold=60)
    table = _decision_table()
    _decide(table, grid, 47.0, None)
    table["dataset_name"], table["dataset"] = "d.jsonl", str(tmp_path / "d.jsonl")
    table["dataset_fingerprint"] = "f" * 64
    table["hp"] = '{"lr": 0.001, "lora_r": 8, "lora_alpha": 16, "epochs": 2, "batch_size": 16}'
    table["full_cost_s"], table["probe_cost_s"] = 12.0, 2.0
    table["p_success"] = [0.99, 0.1, 0.7, np.nan, np.nan]
    table["predicted_gain"] = table["predicted"] - 47
    table["diagnostics"] = "near-duplicate rate 0.41 lowers the predicted score by 3.2pp"
    table = _ranked(table)
    explanation = {
        "prediction": 70.0,
        "base_value": 50.0,
        "additivity_error": 0.0,
        "diagnostics": [],
        "top": [
            {"feature": "hp_log10_lr", "label": "log10 learning rate", "value": -3.0, "contribution": 15.0},
            {"feature": "near_duplicate_rate", "label": "near-duplicate rate", "value": 0.4, "contribution": -2.0},
        ],
    }
    datasets = pd.DataFrame([{name: 0.5 for name in STATIC_FEATURES}])
    datasets["dataset_name"], datasets["candidates"], datasets["go"], datasets["best_predicted"] = "d.jsonl", 5, 2, 70.0
    summary = {
        "candidates": 5, "datasets": 1, "probed": 3, "failed": 1, "not_probed": 1, "go": 2, "policy": "threshold",
        "threshold": 60.0, "top_k": None, "base_score": 47.0, "budget_s": None, "cost_model": {"kind": "tokens"},
        "compute_s": {"train_everything": 60.0, "probes": 6.0, "go_runs": 20.0, "screening_total": 26.0},
        "compute_saved": 1 - 26 / 60, "predictor": {"card_sha256": "c" * 64, "features": 60},
        "timing_s": {"total": 1.0},
    }  # fmt: skip
    result = ScreeningResult(
        table=table,
        summary=summary,
        explanations={"a": explanation, "b": {**explanation, "prediction": 50.0}},
        importance={"hp_log10_lr": 3.0, "near_duplicate_rate": 1.0},
        datasets=datasets,
    )
    return result, grid


def test_report_files_are_strict_self_contained_and_reproducible(tmp_path) -> None:
    result, grid = _result(tmp_path)
    paths = write_report(result, grid, tmp_path / "a")
    again = write_report(result, grid, tmp_path / "b")
    payload = json.loads(paths["json"].read_text())  # strict JSON: NaN would fail allow_nan=False on write
    assert [row["candidate_id"] for row in payload["candidates"]] == result.table["candidate_id"].tolist()
    assert payload["candidates"][0]["hp"]["lr"] == 0.001 and payload["summary"]["go"] == 2
    assert set(payload["explanations"]) == {"a", "b"}  # the best GO run and the best rejected one
    assert "timing_s" not in payload["summary"] and payload["timing_s"] == {"total": 1.0}
    html = paths["html"].read_text()
    assert html.count("<svg") >= 4  # score vs cost, frontier, 2 waterfalls, importance
    assert "<script" not in html and "<link" not in html and 'src="http' not in html
    assert "near-duplicate rate 0.41 lowers the predicted score by 3.2pp" in html
    assert "56.7%" in html  # compute saved: 1 - 26/60
    assert html == again["html"].read_text() and paths["json"].read_bytes() == again["json"].read_bytes()
    parquet = pd.read_parquet(paths["parquet"])
    assert parquet["decision"].tolist() == result.table["decision"].tolist()
    assert "computed otherwise" not in html
    result.summary["predictor"]["protocol_mismatches"] = ["probe.max_steps: 100 in the predictor's training data"]
    assert "probe.max_steps: 100 in the predictor" in write_report(result, grid, tmp_path / "c")["html"].read_text()


def test_dataset_flags_name_the_descriptor() -> None:
    flags = dataset_flags(pd.Series({"near_duplicate_rate": 0.5, "exact_duplicate_rate": 0.01}))
    assert len(flags) == 1 and "near duplicate rate 0.50" in flags[0]


def test_dataset_flags_relative_to_the_grid_skip_what_every_dataset_shares() -> None:
    medians = pd.Series({"near_duplicate_rate": 0.4})
    assert dataset_flags(pd.Series({"near_duplicate_rate": 0.5}), medians) == []
    flags = dataset_flags(pd.Series({"near_duplicate_rate": 0.8}), medians)
    assert len(flags) == 1 and "grid median 0.40" in flags[0]


def test_launch_refuses_a_directory_that_is_not_a_finished_screening(tmp_path, capsys) -> None:
    from tuneahead_ray.cli import main

    assert main(["launch", str(tmp_path)]) == 2
    assert f"{tmp_path}: not a finished screening (no grid.json or candidates.parquet)" in capsys.readouterr().err


def test_default_predictor_cache_key_follows_corpus_features_and_settings(tmp_path, monkeypatch) -> None:
    from tuneahead_ray.predictor import PredictorConfig, default_predictor_dir

    monkeypatch.setenv("TUNEAHEAD_CACHE", str(tmp_path / "cache"))
    corpus = tmp_path / "corpus.parquet"
    corpus.write_bytes(b"first corpus")
    full = default_predictor_dir(corpus, ("static", "probe", "hp"))
    assert full.parent == tmp_path / "cache" / "predictors"
    assert default_predictor_dir(corpus, ("static", "probe", "hp")) == full
    assert default_predictor_dir(corpus, ("static", "hp")) != full
    # Another regressor default (a new release) must not reuse a predictor trained with the old one.
    monkeypatch.setattr(PredictorConfig, "model_dump_json", lambda self, **kw: '{"num_leaves": 7}')
    assert default_predictor_dir(corpus, ("static", "probe", "hp")) != full
    monkeypatch.undo()
    monkeypatch.setenv("TUNEAHEAD_CACHE", str(tmp_path / "cache"))
    corpus.write_bytes(b"second corpus")
    second = default_predictor_dir(corpus, ("static", "probe", "hp"))
    assert second != full
    # The corpus's feature protocol is part of the key too: a predictor's card records the protocol it learned on.
    (tmp_path / "corpus.parquet.protocol.json").write_text('{"descriptors_version": 2}')
    assert default_predictor_dir(corpus, ("static", "probe", "hp")) != second


def test_the_shipped_corpus_is_package_data_so_a_wheel_install_has_the_default_predictor() -> None:
    import fnmatch
    from pathlib import Path

    import pyarrow.parquet as pq

    import tuneahead_ray
    from tuneahead_ray.features import protocol_path
    from tuneahead_ray.screening import default_corpus_path

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    package = Path(tuneahead_ray.__file__).resolve().parent
    corpus = default_corpus_path()
    relative = corpus.relative_to(package / "testbed")  # inside the package, not beside it in the checkout
    pyproject = tomllib.loads((package.parent / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["package-data"]["tuneahead_ray.testbed"]
    assert any(fnmatch.fnmatch(str(relative), pattern) for pattern in patterns), (relative, patterns)
    assert pq.read_metadata(corpus).num_rows >= 1300
    # Its feature protocol ships beside it, so that the default predictor's card records what its features mean.
    protocol = protocol_path(corpus)
    shipped = str(protocol.relative_to(package / "testbed"))
    assert protocol.is_file() and any(fnmatch.fnmatch(shipped, pattern) for pattern in patterns)
