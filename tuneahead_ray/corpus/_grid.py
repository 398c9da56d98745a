"""A corpus for any model: runs sampled from a grid's own datasets and hyperparameter space, each probed (its first
K steps, measured), trained to the end on the same trainer and scored on the grid's benchmark, on the cluster's
base-model workers; resumable, and stopped cleanly at a compute budget.

Rows have the screening's feature columns (so a predictor trained on them reads a screening's candidates) and the
ground truth: ``score``, ``base_score``, ``gain``, the per-group breakdown, the loss curve and the run's costs.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from pathlib import Path

import pyarrow as pa

from tuneahead_ray._private.store import ResultStore
from tuneahead_ray._private.workers import PoolConfig, WorkerFailure, WorkerPool, run_into_store
from tuneahead_ray.evaluation import default_benchmark_spec
from tuneahead_ray.features import candidate_ids, dataset_fingerprints, open_feature_store, outcome_columns
from tuneahead_ray.features.compute import ProgressFn, feature_row, run_descriptors
from tuneahead_ray.probe import ProbeResult, RunWorker
from tuneahead_ray.schemas import Candidate, RunResult
from tuneahead_ray.screening import GridSpec

__all__ = [
    "CorpusSpend",
    "GridCorpusReport",
    "build_grid_corpus",
    "run_compute_seconds",
    "sample_candidates",
]


def sample_candidates(candidates: list[Candidate], runs: int, seed: int) -> list[Candidate]:
    """A seeded sample of ``runs`` candidates (all of them when the grid has no more), in grid order."""
    if runs >= len(candidates):
        return list(candidates)
    picked = sorted(random.Random(seed).sample(range(len(candidates)), runs))
    return [candidates[i] for i in picked]


def run_compute_seconds(row: dict, gpus_per_worker: float) -> float:
    """What a corpus run cost in device-seconds: probe, rest of the training and evaluation, times the GPUs (or
    CPU slots) its worker held."""
    return (row["train_seconds"] + row["eval_seconds"]) * max(gpus_per_worker, 1.0)


def _corpus_row(
    candidate: Candidate, fingerprint: str, static: dict[str, float], probe: ProbeResult, run: RunResult
) -> dict:
    return {**feature_row(candidate, fingerprint, static, probe), **outcome_columns(run)}


class GridCorpusReport:
    """What a build did: the corpus, failed runs, device-hours spent in all, and whether the budget stopped it."""

    def __init__(self, table: pa.Table, failures: list[WorkerFailure], spent_hours: float, at_budget: bool) -> None:
        self.table, self.failures, self.spent_hours, self.at_budget = table, failures, spent_hours, at_budget


class CorpusSpend:
    """Device-seconds spent by a corpus's runs (those already in it included), against an optional budget."""

    def __init__(self, rows: Iterable[dict], gpu_hours: float | None, gpus_per_worker: float) -> None:
        self.budget_s = None if gpu_hours is None else gpu_hours * 3600
        self.gpus_per_worker = gpus_per_worker
        self.seconds = sum(run_compute_seconds(row, gpus_per_worker) for row in rows)

    @property
    def reached(self) -> bool:
        """Whether no more runs may start."""
        return self.budget_s is not None and self.seconds >= self.budget_s

    def add(self, row: dict) -> bool:
        """Count a finished run; whether the budget is now reached (a ``stop_when`` for ``run_into_store``)."""
        self.seconds += run_compute_seconds(row, self.gpus_per_worker)
        return self.reached

    def report(self, store: ResultStore, failures: list[WorkerFailure]) -> GridCorpusReport:
        """The build's report, once ``store`` is flushed."""
        return GridCorpusReport(store.table(), failures, self.seconds / 3600, self.reached)


def build_grid_corpus(
    grid: GridSpec,
    candidates: list[Candidate],
    out_dir: str | Path,
    runs: int,
    *,
    seed: int = 0,
    gpu_hours: float | None = None,
    pool_config: PoolConfig | None = None,
    on_progress: ProgressFn | None = None,
    on_run: Callable[[int, int], None] | None = None,
) -> GridCorpusReport:
    """Train and score ``runs`` candidates sampled from the grid into ``out_dir/corpus.parquet`` (Ray must be up).

    Finished runs are kept and skipped when rerun; with ``gpu_hours``, no run starts once the corpus's runs
    (those already in it included) have spent that many device-hours, and runs in flight then are dropped, to be
    redone by a later build.
    """
    benchmark = grid.benchmark or default_benchmark_spec(grid.model)
    config = pool_config or PoolConfig(device=grid.device)
    store = open_feature_store(Path(out_dir) / "corpus.parquet", grid.probe)
    sample = sample_candidates(candidates, runs, seed)
    fingerprints = dataset_fingerprints(sample)
    todo = {key: c for key, c in candidate_ids(sample, fingerprints).items() if key not in store}
    spend = CorpusSpend(store.rows.values(), gpu_hours, config.gpus_per_worker)
    failures: list[WorkerFailure] = []
    if todo and not spend.reached:
        static = run_descriptors(
            todo.values(),
            fingerprints,
            model=grid.model,
            cache_dir=Path(out_dir) / "cache",
            device=config.device,
            on_progress=on_progress,
        )

        def corpus_row(key: str, result: tuple[ProbeResult, RunResult]) -> dict:
            fingerprint = fingerprints[todo[key].dataset.path]
            return _corpus_row(todo[key], fingerprint, static[fingerprint], *result)

        pool = WorkerPool(RunWorker, (grid.model, config.device, config.shards), config)
        jobs = [(key, (candidate, grid.probe, benchmark)) for key, candidate in todo.items()]
        failures = run_into_store(pool, "probe_and_run", jobs, store, on_run, to_row=corpus_row, stop_when=spend.add)
    store.flush()
    return spend.report(store, failures)
