"""One pass per dataset: per-row features in ``map_batches`` (Ray Data) or the same functions in-process,
then a cheap per-dataset reduction; results cached on disk by dataset content hash."""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import ray
import ray.data

from ..base_models import DEFAULT_MODEL, resolve_model_dir
from ..data import load_dataset
from ..features import DESCRIPTORS_VERSION, STATIC_FEATURES
from ..schemas import DatasetRef, content_hash
from ._cache import read_cached, write_cached
from ._rows import RowFeaturizer, row_stats
from .model_pass import ModelScorer, model_stats, sample_rows

__all__ = ["ROWS_PER_BLOCK", "compute_descriptors", "describe_table"]

#: Rows per Ray Data block and per in-process batch of the per-row pass.
ROWS_PER_BLOCK = 4096
#: Without GPUs, models up to this size (safetensors bytes) score the descriptor sample in the driver process.
DRIVER_SCORING_MAX_BYTES = 256 * 2**20


def describe_table(
    table: pa.Table,
    model: str | Path = DEFAULT_MODEL,
    *,
    use_ray: bool = True,
    sample_size: int = 256,
    seed: int = 0,
    device: str = "auto",
) -> dict[str, float]:
    """All :data:`STATIC_FEATURES` of a prompt/response table, in that order.

    With ``use_ray`` the per-row pass runs as Ray Data ``map_batches`` on the Ray instance the caller initialised,
    and the model sample on a GPU actor when the cluster has GPUs (in this process otherwise); without it the same
    callables run in this process on the same batches.
    """
    missing = [name for name in ("prompt", "response") if name not in table.column_names]
    if missing:
        raise ValueError(f"table needs columns 'prompt' and 'response'; missing {missing}, has {table.column_names}")
    not_text = {name: str(table.schema.field(name).type) for name in ("prompt", "response")}
    not_text = {name: kind for name, kind in not_text.items() if kind not in ("string", "large_string")}
    if not_text:
        raise ValueError(f"columns 'prompt' and 'response' must hold strings; got types {not_text}")
    if table.num_rows == 0:
        raise ValueError("cannot describe an empty dataset")
    if sample_size < 1:
        raise ValueError(f"sample_size must be >= 1, got {sample_size}")
    table = table.select(["prompt", "response"])
    sample = sample_rows(table, sample_size, seed)
    run = _run_on_ray if use_ray else _run_in_process
    rows, scores = run(table, sample, str(model), device)
    values = {**row_stats(rows), **model_stats(scores, seed)}
    return {name: values[name] for name in STATIC_FEATURES}


def compute_descriptors(
    dataset: DatasetRef | str | os.PathLike[str],
    model: str | Path = DEFAULT_MODEL,
    *,
    use_ray: bool = True,
    sample_size: int = 256,
    seed: int = 0,
    device: str = "auto",
    cache_dir: str | os.PathLike[str] | None = None,
) -> dict[str, float]:
    """Load a dataset file and describe it (see :func:`describe_table`).

    With ``cache_dir`` the result is stored under a key of (dataset content hash and format, model directory,
    descriptor version, sample size, seed) and a repeated call returns it without reading the dataset.
    """
    ref = dataset if isinstance(dataset, DatasetRef) else DatasetRef(path=Path(dataset))
    key = _cache_key(ref, model, sample_size, seed) if cache_dir is not None else None
    if key is not None:
        cached = read_cached(cache_dir, key, STATIC_FEATURES)
        if cached is not None:
            return cached
    values = describe_table(
        load_dataset(ref), model, use_ray=use_ray, sample_size=sample_size, seed=seed, device=device
    )
    if key is not None:
        write_cached(cache_dir, key, values)
    return values


def _cache_key(ref: DatasetRef, model: str | Path, sample_size: int, seed: int) -> str:
    return content_hash(
        {
            "dataset": ref.fingerprint(),
            "format": ref.format,
            "model": str(resolve_model_dir(model)),
            "version": DESCRIPTORS_VERSION,
            "sample_size": sample_size,
            "seed": seed,
        }
    )


def _slices(table: pa.Table, rows: int) -> Iterator[pa.Table]:
    for start in range(0, table.num_rows, rows):
        yield table.slice(start, rows)


def _run_in_process(table: pa.Table, sample: pa.Table, model: str, device: str) -> tuple[pa.Table, pa.Table]:
    featurize = RowFeaturizer(model)
    rows = pa.concat_tables(featurize(block) for block in _slices(table, ROWS_PER_BLOCK))
    return rows, ModelScorer(model, device)(sample)


def _run_on_ray(table: pa.Table, sample: pa.Table, model: str, device: str) -> tuple[pa.Table, pa.Table]:
    """Row pass as a Ray Data pipeline over the row actors, model sample at the same time: they are independent.

    With a GPU the sample is a second pipeline on a GPU actor. Without one, a small model's sample is scored by the
    driver in a thread while the row actors run: a CPU actor would spend longer starting (importing torch and
    transformers, loading the model: seconds) than scoring it, and would hold a CPU the row actors could use. A
    larger model goes to a CPU actor, never into the driver's memory (on a cluster the driver is the head node).
    """
    if not ray.is_initialized():
        raise RuntimeError("use_ray=True needs a running Ray: call ray.init() first, or pass use_ray=False")
    blocks = math.ceil(table.num_rows / ROWS_PER_BLOCK)
    workers = max(1, min(blocks, int(ray.cluster_resources().get("CPU", 1))))
    rows = ray.data.from_arrow(table, override_num_blocks=blocks).map_batches(
        RowFeaturizer,
        fn_constructor_kwargs={"model": model, "single_threaded": True},
        batch_size=None,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=workers),
        num_cpus=1,
        udf_modifying_row_count=False,
    )
    gpus = _scorer_gpus(device)
    if gpus == 0 and _weights_bytes(model) <= DRIVER_SCORING_MAX_BYTES:
        with ThreadPoolExecutor(max_workers=1) as background:
            scored = background.submit(lambda: _driver_scorer(model, device)(sample))
            return _collect(rows), scored.result()
    scores = ray.data.from_arrow(sample).map_batches(
        ModelScorer,
        fn_constructor_kwargs={"model": model, "device": device},
        batch_size=max(1, sample.num_rows),  # the whole (bounded) sample at once; Ray requires a size with GPUs
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=1),
        num_cpus=1,
        num_gpus=gpus,
        udf_modifying_row_count=False,
    )
    with ThreadPoolExecutor(max_workers=1) as background:
        scored = background.submit(_collect, scores)
        return _collect(rows), scored.result()


@functools.lru_cache(maxsize=1)
def _driver_scorer(model: str, device: str) -> ModelScorer:
    """The driver's scorer for small models, loaded once per process rather than once per dataset."""
    return ModelScorer(model, device)


def _weights_bytes(model: str) -> int:
    """Size of the model directory's safetensors weights."""
    return sum(path.stat().st_size for path in resolve_model_dir(model).glob("*.safetensors"))


def _scorer_gpus(device: str) -> float:
    """One GPU for the model actor when the device asks for CUDA, or is 'auto' and the cluster has a GPU."""
    if device == "cpu":
        return 0.0
    return 1.0 if device.startswith("cuda") or ray.cluster_resources().get("GPU", 0) >= 1 else 0.0


def _collect(dataset: ray.data.Dataset) -> pa.Table:
    return pa.concat_tables(ray.get(dataset.to_arrow_refs()))
