"""A corpus for any model: runs sampled from a grid's own datasets and hyperparameter space, each probed (its first
K steps, measured), trained to the end on the same trainer and scored on the grid's benchmark, on the cluster's
base-model workers; resumable, and stopped cleanly at a compute budget.

Rows have the screening's feature columns (so a predictor trained on them reads a screening's candidates), the
standardized dataset probe's among them (once per dataset, checkpointed in ``corpus.dataset_probes.parquet``), and the
ground truth: ``score``, ``base_score``, ``gain``, the per-group breakdown, the loss curve and the run's costs.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from pathlib import Path

import pyarrow as pa

from tuneahead_ray._private.store import ResultStore
from tuneahead_ray._private.workers import PoolConfig, WorkerFailure, WorkerPool, run_into_store
from tuneahead_ray.evaluation import default_benchmark_spec
from tuneahead_ray.features import (
    DATASET_PROBE_FEATURES,
    candidate_ids,
    dataset_fingerprints,
    open_feature_store,
    outcome_columns,
)
from tuneahead_ray.features.compute import ProgressFn, dataset_probe_path, feature_row, probe_datasets, run_descriptors
from tuneahead_ray.probe import ProbeResult, RunWorker
from tuneahead_ray.schemas import Candidate, RunResult
from tuneahead_ray.screening import GridSpec

__all__ = [
    "CorpusSpend",
    "GridCorpusReport",
    "build_grid_corpus",
    "run_compute_seconds",
    "sample_candidates",
    "with_dataset_probes",
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


def _same(a: object, b: object) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def _lacks_dataset_probe(row: dict, probe: dict | None) -> bool:
    return probe is None or not all(_same(row.get(name), probe[name]) for name in DATASET_PROBE_FEATURES)


def with_dataset_probes(
    grid: GridSpec,
    candidates: dict[str, Candidate],
    fingerprints: dict[Path, str],
    store: ResultStore,
    out_dir: Path,
    *,
    todo: set[str],
    config: PoolConfig,
    on_progress: ProgressFn | None = None,
) -> tuple[dict[str, dict[str, float]], list[WorkerFailure]]:
    """The descriptors and standardized dataset probe of every dataset that ``todo``'s candidates (keys of
    ``candidates``) train on, by fingerprint, each dataset probed once (checkpointed in
    ``out_dir/corpus.dataset_probes.parquet``, so a rerun probes only new datasets).

    Stored runs whose dataset-probe columns are missing or differ from the checkpoint's (a corpus built before the
    dataset probe, or one whose checkpoint was deleted to change ``dataset_probe:``) get the current ones; their
    runs are kept. Only stored runs of ``candidates`` can be probed: others keep what they have. Returns the
    features by fingerprint and one failure per candidate whose dataset probe failed (a ``todo`` one must not run).
    """
    checkpoint = ResultStore(dataset_probe_path(out_dir / "corpus.parquet"), key="dataset_probe_id")
    probes = {row["dataset_fingerprint"]: row for row in checkpoint.rows.values() if row["model"] == grid.model}
    stale = {
        key for key, row in store.rows.items() if _lacks_dataset_probe(row, probes.get(row["dataset_fingerprint"]))
    }
    wanted = {key: c for key, c in candidates.items() if key in todo or key in stale}
    if not wanted:
        return {}, []
    static = run_descriptors(
        wanted.values(), fingerprints, model=grid.model, cache_dir=out_dir / "cache", device=config.device,
        on_progress=on_progress,
    )  # fmt: skip
    merged, probes, failures = probe_datasets(
        wanted, fingerprints, static, out_dir / "corpus.parquet", model=grid.model, spec=grid.probe,
        dataset_spec=grid.dataset_probe, pool_config=config, on_progress=on_progress,
    )  # fmt: skip
    for key in stale & store.rows.keys():
        row = store.rows[key]
        if (probe := probes.get(row["dataset_fingerprint"])) is not None and _lacks_dataset_probe(row, probe):
            store.append({**row, **{name: probe[name] for name in DATASET_PROBE_FEATURES}})
    return merged, failures


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
    redone by a later build. The dataset probes are not runs: they start even when the budget is spent, to bring
    stored runs that lack them up to date.
    """
    benchmark = grid.benchmark or default_benchmark_spec(grid.model)
    config = pool_config or PoolConfig(device=grid.device)
    store = open_feature_store(Path(out_dir) / "corpus.parquet", grid.probe)
    sample = sample_candidates(candidates, runs, seed)
    fingerprints = dataset_fingerprints(sample)
    ids = candidate_ids(sample, fingerprints)
    todo = {key: c for key, c in ids.items() if key not in store}
    spend = CorpusSpend(store.rows.values(), gpu_hours, config.gpus_per_worker)
    if spend.reached:
        todo = {}
    static, failures = with_dataset_probes(
        grid, ids, fingerprints, store, Path(out_dir), todo=set(todo), config=config, on_progress=on_progress,
    )  # fmt: skip
    for failure in failures:
        todo.pop(failure.key, None)
    if todo:

        def corpus_row(key: str, result: tuple[ProbeResult, RunResult]) -> dict:
            fingerprint = fingerprints[todo[key].dataset.path]
            return _corpus_row(todo[key], fingerprint, static[fingerprint], *result)

        pool = WorkerPool(RunWorker, (grid.model, config.device, config.shards), config)
        jobs = [(key, (candidate, grid.probe, benchmark)) for key, candidate in todo.items()]
        failures += run_into_store(pool, "probe_and_run", jobs, store, on_run, to_row=corpus_row, stop_when=spend.add)
    store.flush()
    return spend.report(store, failures)
