"""``tuneahead-ray screen`` end to end on a real local Ray: outputs, resume after a kill, and ``ray job submit``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests._harness.clusters import isolated_process, ray_start_head
from tuneahead_ray.cli import main
from tuneahead_ray.testbed import DataSpec, write_dataset

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GRID = """\
datasets: [data/*.jsonl]
hp:
  lr: [1.0e-3, 1.0e-2]
  lora_r: [4, 8]
  max_seq_len: 48
  batch_size: 16
probe: {fraction: 0.2, min_steps: 5, max_steps: 10}
dataset_probe: {hp: {max_steps: 5}}
threshold: 45
policy: success_probability
budget: {full_runs: 2}
"""
#: Columns that record where and how fast a probe ran: they differ between runs by design.
MACHINE_COLUMNS = ["worker", "probe_seconds"]
#: How long `ray job submit` may take to run the screening on the `ray start` head (below the per-test timeout).
JOB_TIMEOUT_S = 360


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("screen")
    write_dataset(DataSpec(size=160, seed=1), root / "data" / "clean.jsonl")
    write_dataset(DataSpec(size=160, label_noise=0.7, seed=2), root / "data" / "noisy.jsonl")
    path = root / "grid.yaml"
    path.write_text(GRID, encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _shared_predictor_cache(predictor_cache: Path) -> None:
    """Default predictors come from the session's temporary cache, which the subprocesses below inherit."""


@pytest.fixture(scope="module")
def screened(grid: Path, ray_session) -> Path:
    out = grid.parent / "uninterrupted"
    assert main(["screen", str(grid), "--out", str(out)]) == 0
    return out


def _report(out: Path) -> dict:
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    report.pop("timing_s")
    report["grid"].pop("output_dir")
    return report


def _candidates(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / "candidates.parquet").drop(columns=MACHINE_COLUMNS)


def _checkpoint_lines(out: Path) -> int:
    path = out / "features.parquet.jsonl"
    return len(path.read_bytes().splitlines()) if path.exists() else 0


def test_screen_writes_the_report_and_rerunning_reprobes_nothing(screened: Path, grid: Path) -> None:
    report = _report(screened)
    summary = report["summary"]
    assert summary["candidates"] == summary["probed"] == 8 and summary["datasets"] == 2
    decisions = [row["decision"] for row in report["candidates"]]
    assert decisions.count("GO") == summary["go"] >= 1
    assert summary["compute_s"]["go_runs"] <= summary["budget_s"] + 1e-9
    assert 0 < summary["compute_saved"] < 1
    noisy = [row["predicted"] for row in report["candidates"] if row["dataset_name"] == "noisy.jsonl"]
    clean = [row["predicted"] for row in report["candidates"] if row["dataset_name"] == "clean.jsonl"]
    assert max(noisy) < max(clean)  # 70% wrong answers: the predictor must see it
    html = (screened / "report.html").read_text(encoding="utf-8")
    assert all(row["candidate_id"][:10] in html for row in report["candidates"] if row["decision"] == "GO")
    assert len(pd.read_parquet(screened / "candidates.parquet")) == 8

    assert main(["screen", str(grid), "--out", str(screened)]) == 0
    assert _checkpoint_lines(screened) == 8  # nothing probed twice
    assert _report(screened) == report


def test_a_killed_screening_resumes_to_the_same_report(screened: Path, grid: Path) -> None:
    out = grid.parent / "killed"
    command = [sys.executable, "-m", "tuneahead_ray.cli", "screen", str(grid), "--out", str(out), "--num-cpus", "2"]
    # Its own process group and Ray temp dir: leaving the block kills the driver and the Ray it started, mid-probe.
    with isolated_process(command) as screening:
        deadline = time.monotonic() + 240
        while _checkpoint_lines(out) < 3 and screening.process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
    killed_at = _checkpoint_lines(out)
    assert 3 <= killed_at < 8, f"the kill should land mid-probe stage, at {killed_at} of 8"
    assert not (out / "report.json").exists()

    assert main(["screen", str(grid), "--out", str(out)]) == 0
    assert _checkpoint_lines(out) == 8  # the finished probes were kept, the rest done once
    assert _report(out) == _report(screened)
    pd.testing.assert_frame_equal(_candidates(out), _candidates(screened))


def test_ray_job_submit_runs_a_screening_on_a_running_cluster(screened: Path, grid: Path) -> None:
    out = grid.parent / "job"
    # The head (at most 120 s to come up) and the job (JOB_TIMEOUT_S) stay within the per-test timeout (600 s).
    with ray_start_head(num_cpus=2, ready_timeout_s=120) as address:
        submit = ["ray", "job", "submit", "--address", address, "--", "tuneahead-ray", "screen", str(grid)]
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while True:  # the head answers before its dashboard agent takes jobs
            left = max(1.0, deadline - time.monotonic())
            job = subprocess.run([*submit, "--out", str(out)], capture_output=True, text=True, timeout=left)
            if "No available agent" not in job.stderr or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
        assert "succeeded" in job.stdout.lower()
    assert _report(out) == _report(screened)


def test_probe_budget_probes_only_the_candidates_in_contention(screened: Path, grid: Path) -> None:
    out = grid.parent / "prescreened"
    assert main(["screen", str(grid), "--out", str(out), "--probe-budget", "3"]) == 0
    report = _report(out)
    stages = [row["stage"] for row in report["candidates"]]
    assert stages.count("probed") == 3 and stages.count("not_probed") == 5
    assert _checkpoint_lines(out) == 3
    assert all(row["decision"] == "NO-GO" for row in report["candidates"] if row["stage"] == "not_probed")
    assert all(row["reason"].startswith("not probed") for row in report["candidates"] if row["stage"] != "probed")


def test_launch_resumes_go_runs_from_their_probes_and_feeds_the_predictor(
    grid: Path, ray_session, capsys: pytest.CaptureFixture[str]
) -> None:
    from tuneahead_ray.probe import full_run
    from tuneahead_ray.schemas import Candidate, DatasetRef, HyperParams

    kept = grid.parent / "kept.yaml"
    kept.write_text(GRID.replace("policy: success_probability", "policy: top_k\ntop_k: 1\nkeep_probe_state: true"))
    out = grid.parent / "launched"
    assert main(["screen", str(kept), "--out", str(out)]) == 0
    assert main(["launch", str(out)]) == 0
    assert "RMSE of the screening's predictions" in capsys.readouterr().out
    outcome = pd.read_parquet(out / "outcomes.parquet")
    assert len(outcome) == 1 and bool(outcome["resumed_from_probe"].iloc[0])
    row = outcome.iloc[0]
    hp = HyperParams.model_validate_json(row["hp"])
    scratch = full_run(Candidate(model="default", dataset=DatasetRef(path=row["dataset"]), hp=hp), device="cpu")
    assert row["score"] == pytest.approx(scratch.score)  # resuming from the probe is the same run
    assert list(row["loss_curve"]) == pytest.approx(scratch.loss_curve)
    assert main(["launch", str(out)]) == 0  # nothing left to train: the outcome is kept, not recomputed
    assert len(pd.read_parquet(out / "outcomes.parquet")) == 1


def test_predict_grid_agrees_with_the_screening(screened: Path, grid: Path, capsys) -> None:
    from tuneahead_ray.predictor import default_corpus_path, default_predictor_dir

    model_dir = default_predictor_dir(default_corpus_path())  # trained by the screening above
    out = grid.parent / "predictions.json"
    assert main(["predict", "--model-dir", str(model_dir), "--grid", str(grid), "--out", str(out)]) == 0
    predicted = {row["candidate_id"]: row["prediction"] for row in json.loads(out.read_text())}
    screened_rows = {row["candidate_id"]: row["predicted"] for row in _report(screened)["candidates"]}
    assert predicted.keys() == screened_rows.keys()
    assert all(predicted[key] == pytest.approx(screened_rows[key], abs=1e-9) for key in predicted)


def test_the_dataset_probe_runs_once_per_dataset_and_a_predictor_reading_it_agrees_with_predict(
    screened: Path, grid: Path, tmp_path
) -> None:
    """Each dataset's standardized probe ran once and is charged once; a predictor of static + probe +
    dataset-probe + hp features screens from the same checkpoint (nothing probed again) and `predict --grid`
    resumes it and agrees."""
    from tests._harness.metadatasets import FAST, synthetic_corpus
    from tuneahead_ray._private.store import ResultStore
    from tuneahead_ray.features import FEATURE_GROUPS
    from tuneahead_ray.predictor import ScorePredictor, save_predictor

    store = ResultStore(screened / "features.dataset_probes.parquet", key="dataset_probe_id")
    assert len(store) == 2  # two datasets, eight candidates
    spent = _report(screened)["summary"]["compute_s"]
    tokens = sum(row["dataset_probe_tokens"] for row in store.rows.values())
    assert spent["dataset_probes"] == pytest.approx(tokens / 5_000.0)  # the grid's token cost model
    assert spent["screening_total"] == pytest.approx(spent["dataset_probes"] + spent["probes"] + spent["go_runs"])
    noisy, clean = sorted(store.rows.values(), key=lambda row: -row["dataset_probe_initial_loss"])
    assert noisy["dataset_probe_initial_loss"] > clean["dataset_probe_initial_loss"]

    features = [name for group in ("static", "probe", "dataset_probe", "hp") for name in FEATURE_GROUPS[group]]
    save_predictor(ScorePredictor(features, FAST).fit(synthetic_corpus(300), "score"), tmp_path / "model")
    out = tmp_path / "out"
    shutil.copytree(screened, out)
    own = tmp_path / "grid.yaml"
    datasets = f"datasets: ['{grid.parent}/data/*.jsonl']"
    own.write_text(
        GRID.replace("datasets: [data/*.jsonl]", datasets) + f"predictor: {tmp_path / 'model'}\noutput_dir: {out}\n"
    )
    assert main(["screen", str(own)]) == 0
    assert _checkpoint_lines(out) == 8  # nothing probed again
    assert len((out / "features.dataset_probes.parquet.jsonl").read_bytes().splitlines()) == 2
    assert _report(out)["summary"]["compute_s"]["dataset_probes"] == spent["dataset_probes"]  # charged the same

    predictions = tmp_path / "predictions.json"
    assert main(["predict", "--model-dir", str(tmp_path / "model"), "--grid", str(own), "--out", str(predictions)]) == 0
    assert _checkpoint_lines(out) == 8
    predicted = {row["candidate_id"]: row["prediction"] for row in json.loads(predictions.read_text())}
    screened_rows = _report(out)["candidates"]
    assert all(predicted[row["candidate_id"]] == pytest.approx(row["predicted"], abs=1e-9) for row in screened_rows)
