"""Results written as they finish: an append-only JSONL checkpoint beside an atomically rewritten Parquet file.

A killed job loses at most the row being written (a torn last line is cut off on resume); the Parquet file is
always either the previous complete version or the new one (temp file + rename).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tuneahead_ray._private.atomic import write_parquet_atomic

__all__ = ["ResultStore"]


class ResultStore:
    """Rows keyed by ``candidate_id``: ``append`` is durable at once, ``flush`` rewrites the Parquet file."""

    def __init__(self, parquet_path: str | Path, key: str = "candidate_id"):
        self.parquet_path = Path(parquet_path)
        self.checkpoint_path = self.parquet_path.with_name(self.parquet_path.name + ".jsonl")
        self.key = key
        self.rows: dict[str, dict] = {}
        self._load_checkpoint()

    def _load_checkpoint(self) -> None:
        if not self.checkpoint_path.exists():
            # A shipped or copied result without its checkpoint: start the checkpoint from the Parquet rows.
            if self.parquet_path.exists():
                for row in pq.read_table(self.parquet_path).to_pylist():
                    self.append(row)
            return
        data = self.checkpoint_path.read_bytes()
        if data and not data.endswith(b"\n"):
            # A kill mid-write left a torn last line: drop it so the next append starts on a fresh line.
            data = data[: data.rfind(b"\n") + 1]
            with open(self.checkpoint_path, "r+b") as handle:
                handle.truncate(len(data))
        for line in data.decode("utf-8").splitlines():
            row = json.loads(line)
            self.rows[row[self.key]] = row

    def __contains__(self, key: str) -> bool:
        return key in self.rows

    def __len__(self) -> int:
        return len(self.rows)

    def append(self, row: dict) -> None:
        """Record one finished row durably (flushed and fsynced) before anything else happens.

        The row kept in memory is the one a resumed store reads back (same keys, order and types), so results do
        not depend on whether a row was computed now or before a restart.
        """
        line = json.dumps(row, sort_keys=True)
        self.checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.checkpoint_path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.rows[row[self.key]] = json.loads(line)

    def table(self) -> pa.Table:
        """All rows in key order, as an Arrow table."""
        return pa.Table.from_pylist([self.rows[k] for k in sorted(self.rows)])

    def flush(self) -> Path:
        return write_parquet_atomic(self.table(), self.parquet_path)
