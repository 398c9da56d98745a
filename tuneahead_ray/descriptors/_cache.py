"""On-disk JSON cache of descriptor vectors, one file per key, written atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .._private.atomic import write_text_atomic

__all__ = ["read_cached", "write_cached"]


def _entry(directory: Path, key: str) -> Path:
    return directory / f"{key}.json"


def read_cached(directory: str | os.PathLike[str], key: str, features: tuple[str, ...]) -> dict[str, float] | None:
    """The cached vector under ``key``, or None when absent, unreadable or not holding exactly ``features``."""
    try:
        stored = json.loads(_entry(Path(directory), key).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    values = stored.get("features") if isinstance(stored, dict) else None
    if not isinstance(values, dict) or list(values) != list(features):
        return None
    if not all(isinstance(value, int | float) for value in values.values()):
        return None
    return {name: float(values[name]) for name in features}


def write_cached(directory: str | os.PathLike[str], key: str, values: dict[str, float]) -> Path:
    """Store ``values`` under ``key`` (atomically)."""
    target = write_text_atomic(json.dumps({"key": key, "features": values}, indent=1), _entry(Path(directory), key))
    return target
