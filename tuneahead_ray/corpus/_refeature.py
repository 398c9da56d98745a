"""Refreshing a corpus's meta-features without redoing its full runs.

Each run's dataset is regenerated from its stored spec (the testbed generator is deterministic), and its static
descriptors and probe (the run's own first K steps, deterministic for its seed) are recomputed on the actor pool
with the current code; the hyperparameter features are recomputed from each run's stored hyperparameters. The
ground truth (score, base score, loss curve, costs, proxy scores) is kept as it is; the feature columns are replaced
and new ones appended. Finished runs are checkpointed, so a
killed refresh resumes where it stopped; the corpus file is rewritten once, atomically, at the end.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tuneahead_ray._private.atomic import write_parquet_atomic, write_text_atomic
from tuneahead_ray._private.store import ResultStore
from tuneahead_ray._private.workers import PoolConfig, WorkerFailure
from tuneahead_ray.base_models import DEFAULT_MODEL
from tuneahead_ray.corpus._build import run_corpus_jobs
from tuneahead_ray.corpus._sampling import CorpusSpec
from tuneahead_ray.features import DESCRIPTOR_SAMPLE_SIZE, DESCRIPTORS_VERSION, hp_features, protocol_path
from tuneahead_ray.probe import DatasetProbeSpec, ProbeSpec
from tuneahead_ray.schemas import HyperParams
from tuneahead_ray.testbed import DataSpec

__all__ = ["refeature_corpus", "refeature_checkpoint"]


def refeature_checkpoint(corpus_path: str | Path, only_row_descriptors: bool = False) -> Path:
    """Where a refresh of ``corpus_path`` keeps its finished rows (``<name>.refeature.parquet`` + ``.jsonl``;
    ``<name>.refeature-rows.parquet`` for a refresh of the per-row descriptors only)."""
    path = Path(corpus_path)
    return path.with_name(path.stem + (".refeature-rows" if only_row_descriptors else ".refeature") + ".parquet")


def _spec(row: dict) -> CorpusSpec:
    spec = CorpusSpec(
        data=DataSpec.model_validate_json(row["data_spec"]), hp=HyperParams.model_validate_json(row["hp"])
    )
    if spec.run_id() != row["candidate_id"]:
        raise ValueError(f"run {row['candidate_id']}: its stored spec hashes to {spec.run_id()}; cannot regenerate")
    return spec


#: Wall-clock costs stay those of the build: they are compared with its full-run timings, measured under the same
#: machine load; a refresh's own timings (kept in its checkpoint) reflect whatever else ran during the refresh.
_BUILD_TIMINGS = ("probe_seconds", "descriptor_seconds")


def _with_hp_features(corpus: pa.Table, fresh: dict[str, dict]) -> dict[str, dict]:
    """The refreshed rows plus the hyperparameter features recomputed (in-process: they need no model) from each
    run's stored hyperparameters and example count."""
    runs = corpus.select(["candidate_id", "hp", "num_examples"]).to_pylist()
    hps = {
        run["candidate_id"]: hp_features(HyperParams.model_validate_json(run["hp"]), int(run["num_examples"]))
        for run in runs
    }
    return {key: {**row, **hps[key]} for key, row in fresh.items() if key in hps}


def _merged(corpus: pa.Table, fresh: dict[str, dict]) -> pa.Table:
    """``corpus`` with every feature column the refresh computed replaced (new ones appended), rows in order."""
    ids = corpus.column("candidate_id").to_pylist()
    if "num_examples" in corpus.column_names:
        fresh = _with_hp_features(corpus, fresh)
    names = [name for name in next(iter(fresh.values())) if name not in ("candidate_id", *_BUILD_TIMINGS)]
    for name in names:
        values = pa.array([fresh[key][name] for key in ids])
        if name in corpus.column_names:
            corpus = corpus.set_column(
                corpus.column_names.index(name), name, values.cast(corpus.schema.field(name).type)
            )
        else:
            corpus = corpus.append_column(name, values)
    return corpus


def refeature_corpus(
    corpus_path: str | Path,
    *,
    model: str = DEFAULT_MODEL,
    probe_spec: ProbeSpec | None = None,
    pool_config: PoolConfig | None = None,
    row_descriptors: bool = True,
    only_row_descriptors: bool = False,
    limit: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[pa.Table | None, list[WorkerFailure]]:
    """Recompute descriptors + probe features of every run in ``corpus_path`` and rewrite the file; Ray must be up.

    ``row_descriptors=False`` keeps the stored per-row descriptors (a pure function of the regenerated data; valid
    while their definitions are unchanged) and recomputes only the model-based ones and the probe, which is much
    cheaper. ``only_row_descriptors`` recomputes the per-row descriptors alone (after one was added or changed; the
    model-based ones, the probes and the dataset probes are kept), which needs no model pass and no training.
    ``limit`` stops after that many newly computed runs
    (the checkpoint keeps them; nothing is rewritten). Returns the rewritten table (``None`` while runs are
    missing) and the runs that failed.
    """
    if only_row_descriptors and not row_descriptors:
        raise ValueError("only_row_descriptors and row_descriptors=False contradict each other")
    corpus_path = Path(corpus_path)
    corpus = pq.read_table(corpus_path)
    store = ResultStore(refeature_checkpoint(corpus_path, only_row_descriptors))
    rows = corpus.select(["candidate_id", "data_spec", "hp"]).to_pylist()
    todo = [row for row in rows if row["candidate_id"] not in store]
    if limit is not None:
        todo = todo[:limit]
    probe_spec = probe_spec or ProbeSpec()
    if only_row_descriptors:
        method, jobs = "row_descriptors", [(row["candidate_id"], (_spec(row),)) for row in todo]
    else:
        method = "features"
        jobs = [(row["candidate_id"], (_spec(row), probe_spec, row_descriptors)) for row in todo]
    init = (model, None, (pool_config or PoolConfig(device="cpu")).device)
    failures = run_corpus_jobs(store, method, jobs, init, pool_config, on_progress)
    if any(row["candidate_id"] not in store for row in rows):
        return None, failures
    merged = _merged(corpus, store.rows)
    write_parquet_atomic(merged, corpus_path)
    _record_protocol(corpus_path, None if only_row_descriptors else probe_spec)
    return merged, failures


def _record_protocol(corpus_path: Path, probe_spec: ProbeSpec | None) -> None:
    """Bring the corpus's recorded feature protocol (if it has one) up to what the refresh computed: the descriptors'
    version and sample size and, unless only descriptors were refreshed (``probe_spec`` None), the probe's and the
    dataset probe's specs. Its ground truth is unchanged."""
    path = protocol_path(corpus_path)
    if not path.is_file():
        return
    protocol = json.loads(path.read_text(encoding="utf-8"))
    protocol |= {"descriptors_version": DESCRIPTORS_VERSION, "descriptor_sample_size": DESCRIPTOR_SAMPLE_SIZE}
    if probe_spec is not None:
        protocol |= {
            "probe": probe_spec.model_dump(mode="json"),
            "dataset_probe": DatasetProbeSpec().model_dump(mode="json"),
        }
    write_text_atomic(json.dumps(protocol, indent=2, sort_keys=True) + "\n", path)
