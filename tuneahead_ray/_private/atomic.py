"""The one atomic writer: a temp file beside the target, replaced into place only when it is complete.

A reader (or a resumed job) always sees either the previous complete file or the new one, never a torn one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["replacing", "write_bytes_atomic", "write_parquet_atomic", "write_text_atomic"]


@contextmanager
def replacing(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A unique temp file beside ``path`` to write in the block; it replaces ``path`` when the block succeeds and
    is removed either way."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(data: bytes, path: str | os.PathLike[str], mode: int | None = None) -> Path:
    """Write ``data`` to ``path``; with ``mode``, the file has those permissions before it appears."""
    with replacing(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            tmp.chmod(mode)
    return Path(path)


def write_text_atomic(text: str, path: str | os.PathLike[str]) -> Path:
    """Write ``text`` (UTF-8, ``\\n`` line ends) to ``path``."""
    return write_bytes_atomic(text.encode("utf-8"), path)


def write_parquet_atomic(table: pa.Table, path: str | os.PathLike[str]) -> Path:
    """Write ``table`` to ``path`` as Parquet."""
    with replacing(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)
