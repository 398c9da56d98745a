"""Bring your own model, end to end on a local Ray: a model directory that is not the embedded one and a
multiple-choice benchmark file; a corpus of its runs built from the grid (and stopped at a budget), a predictor
trained on it, a screening, ``launch`` of the GO runs scored on the grid's benchmark, and the predictor refit on
the outcomes."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from tuneahead_ray.cli import main
from tuneahead_ray.features import DATASET_PROBE_FEATURES
from tuneahead_ray.testbed import DataSpec, benchmark_items, write_dataset

pytestmark = pytest.mark.slow  # the tests that start Ray are marked integration too

GRID = """\
model: model
datasets: [data/*.jsonl]
hp:
  lr: [1.0e-3, 4.0e-3, 1.6e-2]
  lora_r: [4, 8]
  batch_size: 16
  epochs: 2
  max_seq_len: 48
probe: {fraction: 0.2, min_steps: 4, max_steps: 6, interval: 2}
benchmark: {kind: multiple_choice, path: mc.jsonl}
predictor: predictor
threshold: 50
policy: top_k
top_k: 2
keep_probe_state: true
output_dir: screening
"""


def _second_tiny_qwen2(out: Path) -> Path:
    """The embedded model with its weights moved by seeded noise, saved as a model directory of its own."""
    from tuneahead_ray.base_models import default_model_dir, load_model

    model = load_model("default", "cpu")
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.01 * parameter.std())
    model.save_pretrained(out, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(default_model_dir() / name, out / name)
    return out


def _choice_items(path: Path) -> None:
    rng = random.Random(0)
    items = [item for item in benchmark_items() if item.family in ("color", "home")][::4]
    answers = {family: sorted({i.answer for i in items if i.family == family}) for family in ("color", "home")}
    rows = []
    for item in items:
        choices = [item.answer, *rng.sample([a for a in answers[item.family] if a != item.answer], 3)]
        rng.shuffle(choices)
        rows.append({"question": item.prompt, "choices": choices, "answer": choices.index(item.answer),
                     "subject": item.family})  # fmt: skip
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("own-model")
    _second_tiny_qwen2(root / "model")
    write_dataset(DataSpec(size=80, seed=1), root / "data" / "clean.jsonl")
    write_dataset(DataSpec(size=80, label_noise=0.8, seed=2), root / "data" / "noisy.jsonl")
    _choice_items(root / "mc.jsonl")
    (root / "grid.yaml").write_text(GRID)
    return root


@pytest.mark.integration
def test_a_corpus_build_stops_at_its_budget_and_resumes_within_it(project: Path, ray_session, capsys) -> None:
    out = project / "budgeted"
    argv = ["corpus", "build", "--grid", str(project / "grid.yaml"), "--runs", "12", "--out", str(out)]
    assert main([*argv, "--gpu-hours", "1e-6"]) == 0
    assert "stopped at the --gpu-hours budget" in capsys.readouterr().out
    assert len(pd.read_parquet(out / "corpus.parquet")) == 1  # the first run to finish spent the budget
    assert main([*argv, "--gpu-hours", "1e-6"]) == 0  # already spent: nothing starts
    assert len(pd.read_parquet(out / "corpus.parquet")) == 1

    # A corpus built before the dataset probe: its run is kept and gets the probe's columns on the next build.
    checkpoint = out / "corpus.parquet.jsonl"
    (row,) = [json.loads(line) for line in checkpoint.read_text().splitlines()]
    probed = {name: row.pop(name) for name in DATASET_PROBE_FEATURES}
    checkpoint.write_text(json.dumps(row) + "\n")
    for path in out.glob("corpus.dataset_probes.parquet*"):
        path.unlink()
    assert main([*argv, "--gpu-hours", "1e-6"]) == 0
    (upgraded,) = pd.read_parquet(out / "corpus.parquet").to_dict("records")
    assert upgraded["score"] == row["score"] and upgraded["train_seconds"] == row["train_seconds"]  # not rerun
    assert {name: upgraded[name] for name in probed} == pytest.approx(probed, nan_ok=True)  # deterministic probe


@pytest.fixture(scope="module")
def corpus(project: Path, ray_session) -> Path:
    """A corpus of 10 of the grid's 12 candidates, built the default way (one seeded random sample)."""
    out = project / "corpus"
    assert main(["corpus", "build", "--grid", str(project / "grid.yaml"), "--runs", "10", "--out", str(out)]) == 0
    return out / "corpus.parquet"


@pytest.mark.integration
def test_own_model_corpus_screen_launch_and_refit(project: Path, corpus: Path, capsys) -> None:
    grid = project / "grid.yaml"
    rows = pd.read_parquet(corpus)  # 10 of the grid's 12 candidates
    assert len(rows) == 10 and set(rows["model"]) == {str(project / "model")}
    assert rows["base_score"].nunique() == 1 and rows["base_score"].iloc[0] > 25  # the MC benchmark, above chance
    assert {"probe_initial_loss", "hp_log10_lr", "num_rows", "score"} <= set(rows.columns)
    assert all(set(json.loads(groups)) == {"color", "home"} for groups in rows["per_family"])
    probes = pd.read_parquet(corpus.parent / "corpus.dataset_probes.parquet")  # once per dataset, not per run
    assert sorted(probes["dataset_fingerprint"]) == sorted(rows["dataset_fingerprint"].unique())
    by_dataset = probes.set_index("dataset_fingerprint")[list(DATASET_PROBE_FEATURES)]
    assert rows[list(DATASET_PROBE_FEATURES)].equals(by_dataset.loc[rows["dataset_fingerprint"]].reset_index(drop=True))
    assert main(["corpus", "build", "--grid", str(grid), "--runs", "10", "--out", str(corpus.parent)]) == 0
    assert len(pd.read_parquet(corpus)) == 10  # resumed: nothing redone

    predictor = project / "predictor"
    assert main(["predictor", "train", "--data", str(corpus), "--target", "score", "--out", str(predictor)]) == 0
    assert main(["screen", str(grid)]) == 0
    screening = project / "screening"
    decisions = pd.read_parquet(screening / "candidates.parquet")
    assert (decisions["decision"] == "GO").sum() == 2

    capsys.readouterr()
    assert main(["launch", str(screening)]) == 0
    outcomes = pd.read_parquet(screening / "outcomes.parquet")
    assert len(outcomes) == 2 and outcomes["resumed_from_probe"].all()
    assert (outcomes["base_score"] == rows["base_score"].iloc[0]).all()  # scored on the grid's benchmark
    by_id = rows.set_index("candidate_id")
    for _, outcome in outcomes[outcomes["candidate_id"].isin(by_id.index)].iterrows():
        assert outcome["score"] == pytest.approx(by_id.loc[outcome["candidate_id"], "score"])  # the same run

    argv = ["predictor", "train", "--incremental", "--data", str(corpus), "--data", str(screening / "outcomes.parquet")]
    assert main([*argv, "--target", "score", "--out", str(predictor)]) == 0
    card = json.loads((predictor / "card.json").read_text())
    runs = set(rows["candidate_id"]) | set(outcomes["candidate_id"])  # an outcome of a corpus run counts once
    assert card["metrics"]["n_train"] == len(runs) and card["metrics"]["previous_n_train"] == 10


@pytest.mark.integration
def test_an_active_build_refits_on_the_corpus_and_picks_by_decision_value(project: Path, corpus: Path, capsys) -> None:
    from tuneahead_ray.corpus import pick_batch
    from tuneahead_ray.features import FEATURE_GROUPS
    from tuneahead_ray.predictor import PredictorConfig, ScorePredictor

    out = project / "active"
    shutil.copytree(corpus.parent, out)  # continue a random build's 10 runs actively
    argv = ["corpus", "build", "--grid", str(project / "grid.yaml"), "--out", str(out), "--strategy", "decision"]
    assert main([*argv, "--runs", "11", "--batch", "5"]) == 0
    assert "estimated RMSE (decision selection)" in capsys.readouterr().out
    pool = pd.read_parquet(out / "pool.parquet")
    assert len(pool) == 2  # the grid's candidates not in the corpus, probed once
    history = json.loads((out / "active.json").read_text())
    assert [batch["runs"] for batch in history["batches"]] == [10, 11]  # refit before the batch and after it

    first = pd.read_parquet(corpus)
    features = [n for group in FEATURE_GROUPS.values() for n in group if n in first.columns]
    predictor = ScorePredictor(features, PredictorConfig(seed=0, interval_method="cv-normalized")).fit(first, "score")
    assert history["batches"][0]["estimated_rmse"] == pytest.approx(predictor.metrics["calibration_rmse"])
    remaining = pool.sort_values("candidate_id", ignore_index=True)
    expected = remaining["candidate_id"].iloc[pick_batch("decision", remaining, predictor, 1, threshold=50, seed=10)]
    added = set(pd.read_parquet(out / "corpus.parquet")["candidate_id"]) - set(first["candidate_id"])
    assert added == set(expected)
    assert main([*argv, "--runs", "11", "--batch", "5"]) == 0  # resumed: nothing to do
    assert len(pd.read_parquet(out / "corpus.parquet")) == 11


def test_a_decision_build_needs_the_grid_threshold(project: Path, tmp_path: Path, capsys) -> None:
    grid = project / "no-threshold.yaml"
    grid.write_text(GRID.replace("threshold: 50\n", ""))
    argv = ["corpus", "build", "--grid", str(grid), "--runs", "3", "--out", str(tmp_path / "c")]
    assert main([*argv, "--strategy", "decision"]) == 2
    assert "threshold: --strategy decision needs the grid's success threshold" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
