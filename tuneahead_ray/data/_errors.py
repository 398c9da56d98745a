"""The exception raised for every kind of bad dataset input."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DatasetError"]


class DatasetError(ValueError):
    """Bad dataset input; message always names the file and, where known, the record index or line number.

    ``record`` is a 0-based index (JSON array, Parquet), ``line`` a 1-based line number (JSONL, JSON parse
    errors). ``str(err)`` reads like ``"data.jsonl, line 3: expected a JSON object, got list"``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        message: str,
        *,
        line: int | None = None,
        record: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.message = message
        self.line = line
        self.record = record
        where = [str(self.path)]
        if record is not None:
            where.append(f"record {record}")
        if line is not None:
            where.append(f"line {line}")
        super().__init__(f"{', '.join(where)}: {message}")

    def __reduce__(self) -> tuple[object, ...]:
        # Rebuild from the original fields: the default would call __init__ with the formatted message
        # only, which breaks copies and transport across processes (e.g. Ray task errors).
        return (_rebuild, (type(self), self.path, self.message, self.line, self.record))


def _rebuild(cls: type[DatasetError], path: Path, message: str, line: int | None, record: int | None) -> DatasetError:
    return cls(path, message, line=line, record=record)
