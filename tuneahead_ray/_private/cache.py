"""Where tuneahead-ray keeps what it can rebuild: trained default predictors, the HAProxy guard's launcher."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_root"]


def cache_root() -> Path:
    """``$TUNEAHEAD_CACHE``, or ``~/.cache/tuneahead-ray``."""
    return Path(os.environ.get("TUNEAHEAD_CACHE", Path.home() / ".cache" / "tuneahead-ray"))
