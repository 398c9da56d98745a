"""Computing meta-feature rows: static descriptors + probe features + hyperparameters, one row per candidate, and
the per-dataset standardized probe's features, one row per dataset.

``compute_features`` runs the descriptors once per distinct dataset (Ray Data), the probes on the actor pool, and
appends every finished row to a checkpoint, so a killed run resumes where it stopped. This module loads torch (the
probe does); the names and encodings it fills in live in the torch-free :mod:`tuneahead_ray.features`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa

from tuneahead_ray._private.store import ResultStore
from tuneahead_ray._private.workers import PoolConfig, WorkerFailure
from tuneahead_ray.constants import STAGE_DATASET_PROBES, STAGE_DESCRIPTORS, STAGE_PROBES
from tuneahead_ray.descriptors.pipeline import compute_descriptors
from tuneahead_ray.features._checkpoint import dataset_probe_path, open_feature_store
from tuneahead_ray.features._hp import hp_features
from tuneahead_ray.features._names import DATASET_PROBE_FEATURES, DESCRIPTOR_SAMPLE_SIZE
from tuneahead_ray.features._rows import candidate_ids, dataset_fingerprints
from tuneahead_ray.probe import DatasetProbeSpec, ProbePool, ProbeResult, ProbeSpec
from tuneahead_ray.schemas import Candidate, DatasetRef, content_hash

__all__ = [
    "ProgressFn",
    "compute_features",
    "dataset_probe_id",
    "dataset_probe_path",
    "dataset_probe_row",
    "feature_row",
    "probe_datasets",
    "run_dataset_probes",
    "run_descriptors",
    "run_probes",
]

#: ``on_progress(stage, done, total)``: called as each stage's items finish (``stage``: one of
#: :data:`tuneahead_ray.constants.PROGRESS_STAGES`).
ProgressFn = Callable[[str, int, int], None]


def feature_row(candidate: Candidate, fingerprint: str, static: dict[str, float], probe: ProbeResult) -> dict:
    """One output row: identity, every feature, and what the probe cost."""
    return {
        "candidate_id": probe.candidate_id,
        "model": candidate.model,
        "dataset": str(candidate.dataset.path),
        "dataset_fingerprint": fingerprint,
        "hp": candidate.hp.model_dump_json(),
        **static,
        **probe.features,
        **hp_features(candidate.hp, probe.num_examples),
        "num_examples": probe.num_examples,
        "truncated_examples": probe.truncated_examples,
        "probe_steps": probe.probe_steps,
        "total_steps": probe.total_steps,
        "probe_tokens": probe.tokens,
        "probe_seconds": probe.probe_seconds,
        "probe_share": probe.probe_steps / probe.total_steps,
        "diverged": probe.diverged,
        "worker": probe.worker,
    }


def dataset_probe_id(model: str, fingerprint: str) -> str:
    """The key of a dataset probe's row: the base model and the dataset's content (the same data probed on another
    model is another row)."""
    return content_hash({"model": model, "dataset": fingerprint})


def dataset_probe_row(model: str, fingerprint: str, probe: ProbeResult) -> dict:
    """One dataset's row: its key, base model and content fingerprint, its standardized probe's features and what
    the probe cost."""
    return {
        "dataset_probe_id": dataset_probe_id(model, fingerprint),
        "model": model,
        "dataset_fingerprint": fingerprint,
        **probe.features,
        "dataset_probe_seconds": probe.probe_seconds,
        "dataset_probe_tokens": probe.tokens,
    }


def run_dataset_probes(
    datasets: dict[str, DatasetRef],
    store: ResultStore,
    *,
    model: str,
    spec: ProbeSpec,
    dataset_spec: DatasetProbeSpec,
    pool_config: PoolConfig | None = None,
    on_progress: ProgressFn | None = None,
    pool: ProbePool | None = None,
) -> list[WorkerFailure]:
    """The standardized probe on ``model`` of every dataset of ``datasets`` (by fingerprint) not in ``store`` yet, on
    ``pool`` (else a pool of its own), each row appended to ``store`` (keyed by :func:`dataset_probe_id`) as it
    finishes; failures are keyed by fingerprint."""
    todo = {key: dataset for key, dataset in datasets.items() if dataset_probe_id(model, key) not in store}
    if not todo:
        return []

    def append(finished: tuple[str, ProbeResult]) -> None:
        store.append(dataset_probe_row(model, *finished))

    with _probe_pool(model, pool_config, pool) as probes:
        pairs = probes.dataset_probes(todo, spec, dataset_spec)
        results = (result if isinstance(result, WorkerFailure) else (key, result) for key, result in pairs)
        return _collect(results, append, STAGE_DATASET_PROBES, len(todo), on_progress)


def run_descriptors(
    candidates: Iterable[Candidate],
    fingerprints: dict[Path, str],
    *,
    model: str,
    cache_dir: str | Path | None = None,
    device: str = "auto",
    on_progress: ProgressFn | None = None,
) -> dict[str, dict[str, float]]:
    """Static descriptors per dataset fingerprint, one Ray Data pass per distinct dataset (cached)."""
    datasets = {fingerprints[c.dataset.path]: c.dataset for c in candidates}
    static: dict[str, dict[str, float]] = {}
    for done, (fingerprint, dataset) in enumerate(datasets.items(), start=1):
        static[fingerprint] = compute_descriptors(
            dataset, model, cache_dir=cache_dir, sample_size=DESCRIPTOR_SAMPLE_SIZE, device=device
        )
        if on_progress is not None:
            on_progress(STAGE_DESCRIPTORS, done, len(datasets))
    return static


def run_probes(
    todo: dict[str, Candidate],
    fingerprints: dict[Path, str],
    static: dict[str, dict[str, float]],
    store: ResultStore,
    *,
    model: str,
    spec: ProbeSpec,
    pool_config: PoolConfig | None = None,
    state_dirs: dict[str, str] | None = None,
    on_progress: ProgressFn | None = None,
    pool: ProbePool | None = None,
) -> list[WorkerFailure]:
    """Probe every candidate of ``todo`` (by id) on ``pool`` (else a pool of its own), appending each feature row to
    ``store``."""
    if not todo:
        return []

    def append(result: ProbeResult) -> None:
        candidate = todo[result.candidate_id]
        fingerprint = fingerprints[candidate.dataset.path]
        store.append(feature_row(candidate, fingerprint, static[fingerprint], result))

    with _probe_pool(model, pool_config, pool) as probes:
        return _collect(probes.run(todo, spec, state_dirs), append, STAGE_PROBES, len(todo), on_progress)


@contextmanager
def _probe_pool(model: str, pool_config: PoolConfig | None, pool: ProbePool | None) -> Iterator[ProbePool]:
    """``pool`` when given (its owner shuts it down), else a pool of its own for the block, shut down after it."""
    if pool is not None:
        yield pool
        return
    own = ProbePool(model, pool_config)
    try:
        yield own
    finally:
        own.shutdown()


def _collect(
    results: Iterable[Any], on_result: Callable[[Any], None], stage: str, total: int, on_progress: ProgressFn | None
) -> list[WorkerFailure]:
    """Hand every finished result to ``on_result`` as it comes, report progress, and return the failures."""
    failures: list[WorkerFailure] = []
    for done, result in enumerate(results, start=1):
        if isinstance(result, WorkerFailure):
            failures.append(result)
        else:
            on_result(result)
        if on_progress is not None:
            on_progress(stage, done, total)
    return failures


def probe_datasets(
    todo: dict[str, Candidate],
    fingerprints: dict[Path, str],
    static: dict[str, dict[str, float]],
    out_path: str | Path,
    *,
    model: str,
    spec: ProbeSpec,
    dataset_spec: DatasetProbeSpec,
    pool_config: PoolConfig | None = None,
    on_progress: ProgressFn | None = None,
    pool: ProbePool | None = None,
) -> tuple[dict[str, dict[str, float]], dict[str, dict], list[WorkerFailure]]:
    """The standardized probe of every dataset of ``todo``'s candidates, once per dataset, checkpointed at
    :func:`dataset_probe_path` of ``out_path`` (a rerun probes only the missing ones).

    Returns each of ``todo``'s datasets' descriptors with its dataset-probe features added (by fingerprint, the
    datasets whose probe succeeded), every row of the checkpoint on ``model`` (by fingerprint, earlier runs' too)
    and one failure per candidate whose dataset probe failed (remove those from ``todo``).
    """
    store = open_feature_store(dataset_probe_path(out_path), spec, dataset_spec, key="dataset_probe_id")
    datasets = {fingerprints[c.dataset.path]: c.dataset for c in todo.values()}
    failed = {
        f.key: f
        for f in run_dataset_probes(
            datasets, store, model=model, spec=spec, dataset_spec=dataset_spec, pool_config=pool_config,
            on_progress=on_progress, pool=pool,
        )
    }  # fmt: skip
    store.flush()
    failures = [
        WorkerFailure(key, f"dataset probe failed: {failed[fp].error}", failed[fp].attempts)
        for key, candidate in todo.items()
        if (fp := fingerprints[candidate.dataset.path]) in failed
    ]
    rows = {row["dataset_fingerprint"]: row for row in store.rows.values() if row["model"] == model}
    merged = {
        key: {**static[key], **{name: rows[key][name] for name in DATASET_PROBE_FEATURES}}
        for key in datasets
        if key in rows
    }
    return merged, rows, failures


def compute_features(
    candidates: list[Candidate],
    out_path: str | Path,
    *,
    model: str,
    spec: ProbeSpec,
    dataset_spec: DatasetProbeSpec | None = None,
    pool_config: PoolConfig | None = None,
    cache_dir: str | Path | None = None,
    on_progress: ProgressFn | None = None,
) -> tuple[pa.Table, list[WorkerFailure]]:
    """Feature rows for every candidate, resuming from ``out_path``'s checkpoint; Ray must be initialised.

    Every row also has its dataset's standardized probe features (``dataset_spec``, default
    :class:`DatasetProbeSpec`), each dataset probed once (:func:`probe_datasets`); a candidate whose dataset probe
    failed is a failure. ``on_progress(stage, done, total)`` is called as each stage's items finish.
    """
    dataset_spec = dataset_spec or DatasetProbeSpec()
    store = open_feature_store(out_path, spec, dataset_spec)
    fingerprints = dataset_fingerprints(candidates)
    todo = {key: c for key, c in candidate_ids(candidates, fingerprints).items() if key not in store}
    device = pool_config.device if pool_config is not None else "auto"
    static = run_descriptors(
        todo.values(), fingerprints, model=model, cache_dir=cache_dir, device=device, on_progress=on_progress
    )
    pool = ProbePool(model, pool_config) if todo else None  # one pool, so each worker loads the model once
    try:
        static, _, failures = probe_datasets(
            todo, fingerprints, static, out_path, model=model, spec=spec, dataset_spec=dataset_spec,
            pool_config=pool_config, on_progress=on_progress, pool=pool,
        )  # fmt: skip
        todo = {key: c for key, c in todo.items() if fingerprints[c.dataset.path] in static}
        failures += run_probes(
            todo, fingerprints, static, store, model=model, spec=spec, pool_config=pool_config,
            on_progress=on_progress, pool=pool,
        )  # fmt: skip
    finally:
        if pool is not None:
            pool.shutdown()
    store.flush()
    return store.table(), failures
