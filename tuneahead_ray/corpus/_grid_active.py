"""Active corpus building: instead of one random sample, runs are trained in batches, each batch chosen from the
grid's candidate pool by a strategy (see :mod:`tuneahead_ray.corpus._active`) with a predictor refit on the runs
finished so far. The predictor's own error estimate after each batch says when more runs stop paying.

The pool is the grid's candidates, probed once (their screening features, kept in ``out_dir/pool.parquet``) so
that a predictor can rank the runs not trained yet; a picked run is then probed again and trained to the end on
one trainer, as in a random build. Everything is resumable: the pool, the corpus and the error history
(``out_dir/active.json``) are written as they grow.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
from pydantic import BaseModel, Field

from tuneahead_ray._private.atomic import write_bytes_atomic
from tuneahead_ray._private.workers import PoolConfig, WorkerFailure, WorkerPool, run_into_store
from tuneahead_ray.corpus._active import Strategy, estimated_rmse, pick_batch, plateau
from tuneahead_ray.corpus._grid import CorpusSpend, GridCorpusReport, _corpus_row, with_dataset_probes
from tuneahead_ray.evaluation import default_benchmark_spec
from tuneahead_ray.features import FEATURE_GROUPS, candidate_ids, dataset_fingerprints, open_feature_store
from tuneahead_ray.features.compute import ProgressFn, run_probes
from tuneahead_ray.predictor import MIN_TRAINING_ROWS, PredictorConfig, ScorePredictor
from tuneahead_ray.probe import RunWorker
from tuneahead_ray.schemas import Candidate
from tuneahead_ray.screening import GridSpec

__all__ = ["ActiveHistory", "BatchRecord", "build_active_corpus"]

HISTORY_FILE = "active.json"


class BatchRecord(BaseModel):
    """The predictor refit before a batch: how many runs it learned from and its estimated RMSE."""

    runs: int = Field(ge=0)
    estimated_rmse: float


class ActiveHistory(BaseModel):
    """What an active build learned batch by batch, and from which batch on more runs stopped paying."""

    strategy: Strategy
    batches: list[BatchRecord] = Field(default_factory=list)
    plateau_runs: int | None = Field(
        None,
        description="The first corpus size whose estimated RMSE is < 5% below that of half as many runs (None: every "
        "doubling still pays).",
    )

    def record(self, runs: int, rmse: float) -> None:
        """Add a refit (a rerun at an unchanged corpus size replaces its record) and update the plateau."""
        self.batches = [b for b in self.batches if b.runs != runs] + [BatchRecord(runs=runs, estimated_rmse=rmse)]
        self.batches.sort(key=lambda batch: batch.runs)
        at = plateau([b.runs for b in self.batches], [b.estimated_rmse for b in self.batches])
        self.plateau_runs = None if at is None else self.batches[at].runs


def _history(path: Path, strategy: Strategy) -> ActiveHistory:
    if path.exists():
        saved = ActiveHistory.model_validate_json(path.read_text(encoding="utf-8"))
        if saved.strategy is strategy:
            return saved
    return ActiveHistory(strategy=strategy)


def _record(history: ActiveHistory, path: Path, runs: int, predictor: ScorePredictor) -> None:
    history.record(runs, estimated_rmse(predictor))
    write_bytes_atomic((history.model_dump_json(indent=2) + "\n").encode("utf-8"), path)


def _fit(corpus: pd.DataFrame, strategy: Strategy, seed: int) -> ScorePredictor:
    """The predictor that ranks the pool: on every corpus feature column, with intervals normalized per run for
    the strategies that read interval widths (the plain cross-fitted interval has one width for all)."""
    features = [name for group in FEATURE_GROUPS.values() for name in group if name in corpus.columns]
    method = "cv" if strategy is Strategy.RANDOM else "cv-normalized"
    return ScorePredictor(features, PredictorConfig(seed=seed, interval_method=method)).fit(corpus, "score")


def build_active_corpus(
    grid: GridSpec,
    candidates: list[Candidate],
    out_dir: str | Path,
    runs: int,
    *,
    strategy: Strategy | str,
    batch_size: int = 25,
    seed: int = 0,
    gpu_hours: float | None = None,
    pool_config: PoolConfig | None = None,
    on_progress: ProgressFn | None = None,
    on_run: Callable[[int, int], None] | None = None,
) -> tuple[GridCorpusReport, ActiveHistory]:
    """Grow ``out_dir/corpus.parquet`` to ``runs`` runs in batches of ``batch_size`` picked by ``strategy`` (Ray
    must be up). ``decision`` needs the grid's ``threshold``; ``gpu_hours`` stops it as in a random build."""
    strategy = Strategy(strategy)
    if batch_size < 1:
        raise ValueError(f"--batch: must be at least 1, got {batch_size}")
    if strategy is Strategy.DECISION and grid.threshold is None:
        raise ValueError("threshold: --strategy decision needs the grid's success threshold (threshold: in the grid)")
    out = Path(out_dir)
    benchmark = grid.benchmark or default_benchmark_spec(grid.model)
    config = pool_config or PoolConfig(device=grid.device)
    store = open_feature_store(out / "corpus.parquet", grid.probe)
    fingerprints = dataset_fingerprints(candidates)
    ids = candidate_ids(candidates, fingerprints)
    spend = CorpusSpend(store.rows.values(), gpu_hours, config.gpus_per_worker)
    history_path = out / HISTORY_FILE
    history = _history(history_path, strategy)
    failures: list[WorkerFailure] = []

    if len(store) >= runs or spend.reached or not set(ids) - set(store.rows):
        # Nothing to train; stored runs that lack the dataset probe still get it.
        failures = with_dataset_probes(grid, ids, fingerprints, store, out, todo=set(), config=config)[1]
        store.flush()
        return spend.report(store, failures), history
    static, failures = with_dataset_probes(
        grid, ids, fingerprints, store, out, todo=set(ids) - set(store.rows), config=config, on_progress=on_progress
    )
    pool_store = open_feature_store(out / "pool.parquet", grid.probe, grid.dataset_probe)
    if strategy is not Strategy.RANDOM:  # the pool's own features rank it; random needs none
        skip = {failure.key for failure in failures} | set(pool_store.rows) | set(store.rows)
        unprobed = {key: c for key, c in ids.items() if key not in skip}
        failures += run_probes(
            unprobed, fingerprints, static, pool_store, model=grid.model, spec=grid.probe, pool_config=config,
            on_progress=on_progress,
        )  # fmt: skip
        pool_store.flush()
    failed: set[str] = {failure.key for failure in failures}
    workers = WorkerPool(RunWorker, (grid.model, config.device, config.shards), config)
    goal, finished = runs - len(store), 0  # the progress of the whole build, across batches

    def batch_progress(done: int, total: int) -> None:
        if on_run is not None:
            on_run(finished + done, max(goal, finished + total))

    try:
        while len(store) < runs and not spend.reached:
            remaining = sorted(key for key in ids if key not in store and key not in failed)
            if not remaining:
                break
            predictor = None
            corpus = store.table().to_pandas()
            if len(corpus) >= MIN_TRAINING_ROWS:
                predictor = _fit(corpus, strategy, seed)
                _record(history, history_path, len(corpus), predictor)
            if strategy is Strategy.RANDOM or predictor is None:
                pool = pd.DataFrame({"candidate_id": remaining})
            else:
                rows = pool_store.rows
                pool = pd.DataFrame([rows[key] for key in remaining if key in rows])
            picks = pick_batch(
                strategy, pool, predictor, min(batch_size, runs - len(store)),
                threshold=grid.threshold if grid.threshold is not None else 0.0, seed=seed + len(store),
            )  # fmt: skip
            batch = {key: ids[key] for key in pool["candidate_id"].iloc[picks]}

            def to_row(key: str, result, batch: dict[str, Candidate] = batch) -> dict:
                fingerprint = fingerprints[batch[key].dataset.path]
                return _corpus_row(batch[key], fingerprint, static[fingerprint], *result)

            jobs = [(key, (candidate, grid.probe, benchmark)) for key, candidate in batch.items()]
            new = run_into_store(
                workers, "probe_and_run", jobs, store, batch_progress, to_row=to_row, stop_when=spend.add,
                shutdown=False,
            )  # fmt: skip
            finished += len(jobs)
            failures += new
            failed |= {failure.key for failure in new}
    finally:
        workers.shutdown()
        store.flush()
    corpus = store.table().to_pandas()
    if len(corpus) >= MIN_TRAINING_ROWS and (not history.batches or history.batches[-1].runs < len(corpus)):
        _record(history, history_path, len(corpus), _fit(corpus, strategy, seed))
    return spend.report(store, failures), history
