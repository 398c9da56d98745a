"""``launch``: train the GO set of a screening (resuming each run from its saved probe state when there is one),
score it, and append the outcomes to a corpus, so ``predictor train --incremental`` can learn from them.

Each outcome row has the corpus's columns (id, features, hyperparameters, score, base score, loss curve, costs) and
is appended the moment it finishes; a killed launch resumes without retraining finished runs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from tuneahead_ray._private.store import ResultStore
from tuneahead_ray._private.workers import PoolConfig, WorkerFailure, WorkerPool, run_into_store
from tuneahead_ray.constants import GO
from tuneahead_ray.evaluation import default_benchmark_spec
from tuneahead_ray.features import outcome_columns
from tuneahead_ray.probe import RunWorker
from tuneahead_ray.schemas import Candidate, DatasetRef, HyperParams, RunResult
from tuneahead_ray.screening._grid import GridSpec

__all__ = ["check_finished_screening", "launch", "outcome_row", "probe_state_dir"]


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


def outcome_row(features: dict, result: RunResult) -> dict:
    """An outcome row: the candidate's screened features and identity, and what its full run gave."""
    return {**features, **outcome_columns(result), "resumed_from_probe": result.resumed_from is not None}


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
    benchmark = grid.benchmark or default_benchmark_spec(grid.model)
    table = pd.read_parquet(out_dir / "candidates.parquet")
    go = table[table["decision"].eq(GO)].head(limit)
    store = ResultStore(outcomes)
    todo = go[~go["candidate_id"].isin(store.rows)]
    failures: list[WorkerFailure] = []
    if len(todo):
        config = pool_config or PoolConfig()
        pool = WorkerPool(RunWorker, (grid.model, config.device, config.shards), config)
        features = {row.candidate_id: _features(row) for _, row in todo.iterrows()}
        jobs = [
            (row.candidate_id, (_candidate(row, grid), benchmark, _state(out_dir, row.candidate_id)))
            for _, row in todo.iterrows()
        ]
        failures = run_into_store(
            pool, "run", jobs, store, on_progress, to_row=lambda key, result: outcome_row(features[key], result)
        )
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
