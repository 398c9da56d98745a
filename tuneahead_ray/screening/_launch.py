"""``launch``: train the GO set of a screening (resuming each run from its saved probe state when there is one),
score it, and append the outcomes to a corpus, so ``predictor train --incremental`` can learn from them.

Each outcome row has the corpus's columns (id, features, hyperparameters, score, base score, loss curve, costs) and
is appended the moment it finishes; a killed launch resumes without retraining finished runs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from tuneahead_ray.grid import GridSpec
from tuneahead_ray.modeling import DEFAULT_MODEL
from tuneahead_ray.probe import PROBE_LOSSES_FILE
from tuneahead_ray.schemas import Candidate, DatasetRef, HyperParams
from tuneahead_ray.store import ResultStore
from tuneahead_ray.workers import PoolConfig, WorkerFailure, WorkerPool, run_into_store

__all__ = ["LaunchWorker", "check_finished_screening", "launch", "probe_state_dir"]


def check_finished_screening(out_dir: str | Path) -> Path:
    """``out_dir`` if a finished `screen` wrote it (its grid and candidates), else a ValueError naming it."""
    out_dir = Path(out_dir)
    missing = [name for name in ("grid.json", "candidates.parquet") if not (out_dir / name).is_file()]
    if missing:
        raise ValueError(f"{out_dir}: not a finished screening (no {' or '.join(missing)}); run `screen` first")
    return out_dir


def probe_state_dir(out_dir: str | Path, candidate_id: str) -> Path:
    """Where a screening keeps a candidate's probe state (with ``keep_probe_state: true``)."""
    return Path(out_dir) / "probe_state" / candidate_id


class LaunchWorker:
    """Holds the base model once; ``train`` runs one GO candidate to the end of its schedule and scores it."""

    def __init__(self, model: str, device: str = "auto", gpus: int = 1):
        from tuneahead_ray.modeling import load_model, load_tokenizer, resolve_device
        from tuneahead_ray.training import score_model, testbed_benchmark

        self.device = resolve_device(device)
        self.tokenizer = load_tokenizer(model)
        self.model = load_model(model, self.device, gpus)
        self.benchmark = testbed_benchmark()
        self.base_score, _ = score_model(self.model, self.tokenizer, self.benchmark)

    def train(self, candidate: Candidate, state_dir: str | None, features: dict) -> dict:
        from tuneahead_ray.data import load_dataset
        from tuneahead_ray.training import (
            StepTrainer,
            attach_adapter,
            detach_adapter,
            encode_pairs,
            score_model,
            train_to_end,
        )

        table = load_dataset(candidate.dataset)
        hp = candidate.hp
        prompts, responses = table.column("prompt").to_pylist(), table.column("response").to_pylist()
        pairs = encode_pairs(self.tokenizer, prompts, responses, hp.max_seq_len)
        total = hp.total_steps(len(pairs))
        adapted = attach_adapter(self.model, hp)
        try:
            trainer = StepTrainer(adapted, pairs, hp, total, self.tokenizer.pad_token_id)
            resumed = state_dir is not None and Path(state_dir, "trainer_state.json").is_file()
            losses: list[float] = []
            if resumed:
                trainer.restore_state(state_dir)
                losses = json.loads(Path(state_dir, PROBE_LOSSES_FILE).read_text(encoding="utf-8"))
            started = time.perf_counter()
            healthy = train_to_end(trainer, losses)
            train_seconds = time.perf_counter() - started
            started = time.perf_counter()
            score, per_family = score_model(adapted, self.tokenizer, self.benchmark)
            eval_seconds = time.perf_counter() - started
        finally:
            self.model = detach_adapter(adapted)
        return {
            **features,
            "score": score,
            "base_score": self.base_score,
            "gain": score - self.base_score,
            "per_family": json.dumps(per_family),
            "loss_curve": losses,
            "diverged": not healthy,
            "resumed_from_probe": resumed,
            "train_seconds": train_seconds,
            "eval_seconds": eval_seconds,
        }


#: Candidate-table columns that are decisions or bookkeeping of the screening, not features of the run.
_SCREENING_COLUMNS = {
    "rank", "decision", "reason", "diagnostics", "drivers", "policy_value", "stage", "error", "predicted", "lower",
    "upper", "p_success", "predicted_gain", "prescreen", "prescreen_lower", "prescreen_upper", "full_cost_s",
    "probe_cost_s", "go_cost_s", "worker",
}  # fmt: skip


def _features(row: pd.Series) -> dict:
    """A candidate row's features and identity, JSON-safe, with what the screening predicted kept for comparison."""
    values = {key: value for key, value in row.items() if key not in _SCREENING_COLUMNS and not key.startswith("hp.")}
    values = {key: (value.item() if hasattr(value, "item") else value) for key, value in values.items()}
    return {**values, "screened_prediction": float(row["predicted"])}


def launch(
    out_dir: str | Path,
    outcomes: str | Path,
    *,
    limit: int | None = None,
    pool_config: PoolConfig | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[pd.DataFrame, list[WorkerFailure]]:
    """Train the GO candidates of the screening in ``out_dir`` (Ray must be up); append outcomes to ``outcomes``."""
    out_dir = check_finished_screening(out_dir)
    grid = GridSpec.model_validate_json((out_dir / "grid.json").read_text(encoding="utf-8"))
    if grid.model != DEFAULT_MODEL:
        raise ValueError(
            f"{out_dir}: launch scores runs on the embedded testbed benchmark, so it supports the embedded model "
            "only; train GO runs of other models with your own trainer and evaluation"
        )
    table = pd.read_parquet(out_dir / "candidates.parquet")
    go = table[table["decision"].eq("GO")].head(limit)
    store = ResultStore(outcomes)
    todo = go[~go["candidate_id"].isin(store.rows)]
    failures: list[WorkerFailure] = []
    if len(todo):
        config = pool_config or PoolConfig()
        pool = WorkerPool(LaunchWorker, (grid.model, config.device, config.shards), config)
        jobs = [
            (row.candidate_id, (_candidate(row, grid), _state(out_dir, row.candidate_id), _features(row)))
            for _, row in todo.iterrows()
        ]
        failures = run_into_store(pool, "train", jobs, store, on_progress)
    outcome = pd.DataFrame([store.rows[key] for key in go["candidate_id"] if key in store.rows])
    return outcome, failures


def _candidate(row: pd.Series, grid: GridSpec) -> Candidate:
    return Candidate(
        model=row["model"],
        dataset=DatasetRef(path=row["dataset"], format=grid.format),
        hp=HyperParams.model_validate_json(row["hp"]),
    )


def _state(out_dir: Path, candidate_id: str) -> str | None:
    path = probe_state_dir(out_dir, candidate_id)
    return str(path) if path.is_dir() else None
