"""Meta-feature rows to the model's input matrix: exactly the model's columns, a bounded number of rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from tuneahead_ray.serve._errors import ApiError

__all__ = ["check_row_count", "feature_matrix", "rows_matrix"]


def _names(names: Sequence[str]) -> str:
    return ", ".join(map(repr, names))


def check_row_count(count: int, limit: int, what: str) -> None:
    """413 ``too_many_<what>`` when a request carries more than ``limit`` items."""
    if count > limit:
        raise ApiError(413, f"too_many_{what}", f"{count} {what} in one request; at most {limit} are accepted")


def feature_matrix(rows: Sequence[Mapping[str, float | None]], features: Sequence[str]) -> np.ndarray:
    """Rows that hold every feature as a float64 matrix in ``features`` order (None -> NaN = missing)."""
    return np.array([[row[name] for name in features] for row in rows], dtype=float).reshape(len(rows), len(features))


def rows_matrix(rows: Sequence[Mapping[str, float | None]], features: Sequence[str], max_rows: int) -> np.ndarray:
    """The model's input for client rows, which must have exactly the model's columns (an unknown column is
    refused rather than ignored, since it is most often a misspelt feature)."""
    check_row_count(len(rows), max_rows, "rows")
    expected = set(features)
    for index, row in enumerate(rows):
        if row.keys() != expected:
            missing = [name for name in features if name not in row]
            unknown = sorted(set(row) - expected)
            problems = [f"missing column(s) {_names(missing)}"] if missing else []
            problems += [f"unknown column(s) {_names(unknown)}"] if unknown else []
            raise ApiError(422, "wrong_columns", f"rows[{index}]: {'; '.join(problems)}")
    return feature_matrix(rows, features)
