"""Metadatasets: loading a table of runs (CSV, Parquet, JSONL) and choosing which of its columns are features.

A *metadataset* has one row per completed fine-tuning run: numeric meta-features and a numeric target. The corpus
built by :mod:`tuneahead_ray.corpus` is one; any table with arbitrary column names is another. Messages name the
file (kept in ``table.attrs["source"]``) and the column.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from tuneahead_ray.predictor._errors import MetadatasetError

__all__ = [
    "CORPUS_EXCLUDED",
    "feature_columns",
    "feature_matrix",
    "load_metadataset",
    "present_columns",
    "source_of",
    "table_sha256",
    "target_values",
]

#: Corpus columns that are never features (``fnmatch`` patterns), and why. :func:`feature_columns` skips them.
CORPUS_EXCLUDED: dict[str, str] = {
    "data_*": "testbed generator knobs (size, noise, duplication...): a real user never observes them",
    "score": "the target",
    "gain": "the target minus the base score: the target in disguise",
    "base_score": "the base model's score: one constant per base model, and on the target side",
    "per_family": "per-family scores of the finished run (target side)",
    "diverged": "whether the full run diverged: known only after training",
    "loss_curve": "losses of the full run; only the early-stop baseline reads its probe part",
    "train_seconds": "cost of the full run: known only after training",
    "eval_seconds": "cost of the final evaluation: known only after training",
    "probe_seconds": "wall-clock timing: depends on the machine and its load, not on the run",
    "descriptor_seconds": "wall-clock timing: depends on the machine and its load, not on the run",
    "dataset_probe_seconds": "wall-clock timing: depends on the machine and its load, not on the run",
    "dataset_probe_tokens": "bookkeeping of the dataset probe's cost, fixed by its spec and the data",
    "proxy_*": "the ProxyLM baseline's inputs: a proxy fine-tune per run, which TuneAhead does not pay for",
    "strong_proxy_*": "the StrongProxyLM baseline's inputs: a strong proxy's fine-tune per run",
    "benchmark_items": "the benchmark's size: one constant per corpus, on the target side",
    "num_examples": "bookkeeping, duplicated by the num_rows descriptor",
    "probe_steps": "bookkeeping of the probe length, fixed by the probe spec",
    "total_steps": "bookkeeping, duplicated by hp_total_steps",
}

_READERS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl"}


def source_of(table: pd.DataFrame) -> str:
    """The file a table was loaded from, for messages ("table" when it was built in memory)."""
    return str(table.attrs.get("source", "table"))


def _read_jsonl(path: Path) -> pd.DataFrame:
    """Rows of a JSONL checkpoint; a torn last line (a writer killed mid-line) is skipped, the file left as is."""
    rows = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            if number == len(lines):
                break
            raise MetadatasetError(f"{path}, line {number}: invalid JSON ({err.msg})") from None
    return pd.DataFrame(rows)


def _read(path: Path) -> pd.DataFrame:
    kind = _READERS.get(path.suffix.lower())
    if kind is None:
        raise MetadatasetError(f"{path}: unsupported file type {path.suffix!r} (use .csv, .parquet or .jsonl)")
    try:
        if kind == "csv":
            return pd.read_csv(path)
        if kind == "parquet":
            return pd.read_parquet(path)
        return _read_jsonl(path)
    except pd.errors.EmptyDataError:
        raise MetadatasetError(f"{path}: the file is empty") from None
    except (OSError, ValueError) as err:
        if isinstance(err, MetadatasetError):
            raise
        raise MetadatasetError(f"{path}: cannot read {kind}: {err}") from None


def load_metadataset(path: str | os.PathLike[str], target: str | None = None) -> pd.DataFrame:
    """A metadataset file as a DataFrame, with ``attrs["source"]`` set; checks ``target`` when given."""
    path = Path(path)
    if not path.is_file():
        raise MetadatasetError(f"{path}: no such file")
    table = _read(path)
    if table.empty:
        raise MetadatasetError(f"{path}: no rows")
    table.attrs["source"] = str(path)
    if target is not None:
        target_values(table, target)
    return table


def target_values(table: pd.DataFrame, target: str) -> np.ndarray:
    """The target column as float64; errors name the file and the column."""
    if target not in table.columns:
        raise MetadatasetError(
            f"{source_of(table)}: no target column {target!r} (columns: {', '.join(map(str, table.columns))})"
        )
    column = table[target]
    if not (pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)):
        raise MetadatasetError(f"{source_of(table)}: target column {target!r} is not numeric (dtype {column.dtype})")
    values = column.to_numpy(dtype=float)
    missing = int(np.sum(~np.isfinite(values)))
    if missing:
        raise MetadatasetError(f"{source_of(table)}: target column {target!r} has {missing} missing or infinite values")
    return values


def _excluded(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def feature_columns(table: pd.DataFrame, target: str, drop: Sequence[str] = ()) -> list[str]:
    """Numeric (or boolean) columns of ``table`` in table order, less the target, ``drop`` and ``CORPUS_EXCLUDED``.

    String, id and list columns are skipped by their dtype. A ``drop`` name that is not a column is an error, so a
    typo cannot silently keep a leaking column.
    """
    unknown = [name for name in drop if name not in table.columns]
    if unknown:
        raise MetadatasetError(f"{source_of(table)}: cannot drop missing column(s) {', '.join(map(repr, unknown))}")
    skipped = {target, *drop}
    columns = [
        str(name)
        for name, column in table.items()
        if name not in skipped and not _excluded(str(name), CORPUS_EXCLUDED) and pd.api.types.is_numeric_dtype(column)
    ]
    if not columns:
        raise MetadatasetError(f"{source_of(table)}: no numeric feature columns besides the target {target!r}")
    return columns


def present_columns(table: pd.DataFrame, names: Sequence[str], what: str) -> list[str]:
    """The ``names`` that ``table`` has, in that order; an error naming ``what`` when it has none of them."""
    present = [name for name in names if name in table.columns]
    if not present:
        raise MetadatasetError(f"{source_of(table)}: none of the {what} columns (e.g. {names[0]!r}) are present")
    return present


def feature_matrix(table: pd.DataFrame, features: Sequence[str]) -> np.ndarray:
    """The ``features`` columns as a float64 matrix (NaN = missing); errors name missing or non-numeric columns."""
    missing = [name for name in features if name not in table.columns]
    if missing:
        raise MetadatasetError(f"{source_of(table)}: missing feature column(s) {', '.join(map(repr, missing))}")
    for name in features:
        if not pd.api.types.is_numeric_dtype(table[name]):
            raise MetadatasetError(
                f"{source_of(table)}: feature column {name!r} is not numeric (dtype {table[name].dtype})"
            )
    return table[list(features)].to_numpy(dtype=float, na_value=np.nan)


def table_sha256(table: pd.DataFrame, columns: Sequence[str]) -> str:
    """sha256 of ``columns`` of ``table`` in a canonical form: columns by name, numbers as little-endian float64
    (one NaN bit pattern, no negative zero), anything else as JSON; row order counts."""
    digest = hashlib.sha256(f"rows={len(table)}".encode())
    for name in sorted(columns):
        column = table[name]
        digest.update(b"\0" + json.dumps(str(name)).encode() + b"\0")
        if pd.api.types.is_numeric_dtype(column):
            values = column.to_numpy(dtype=float, na_value=np.nan) + 0.0
            digest.update(np.where(np.isnan(values), np.nan, values).astype("<f8").tobytes())
        else:
            digest.update(json.dumps(column.tolist(), default=str).encode())
    return digest.hexdigest()
