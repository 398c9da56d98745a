"""The one results document of every benchmark, its writer and the markdown tables the benchmarks print.

A benchmark writes ``benchmarks/results/<name>.json``::

    {"benchmark": name, "machine": machine(), "date": UTC ISO time, "load": what it was asked to do,
     "figures": what it measured}

``machine()`` has the same keys on every machine and names no host. Only the standard library and the package's
atomic writer are imported here (``benchmarks/gpu_probe.py`` runs where Ray, LightGBM and others are absent); a
library's version is read from its installed metadata without importing it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from tuneahead_ray._private.atomic import write_text_atomic

__all__ = ["RESULTS", "machine", "markdown_table", "read_figures", "results_document", "results_path", "write_results"]

#: Where the benchmarks' results live (file names are referenced by the docs).
RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
#: The distributions whose installed versions ``machine()`` reports (None: not installed).
VERSIONS = ("tuneahead-ray", "torch", "transformers", "ray", "lightgbm")


def results_path(name: str) -> Path:
    """``benchmarks/results/<name>.json``."""
    return RESULTS / f"{name}.json"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith(("model name", "Model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30), 1)
    except (AttributeError, ValueError, OSError):
        return None


def _gpus() -> list[str]:
    """GPU names: torch's view when the benchmark has torch loaded, else ``nvidia-smi``'s (torch is not imported
    here for it)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        listed = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in listed.stdout.splitlines() if line.strip()] if listed.returncode == 0 else []


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, object]:
    """What the figures were measured on, with the same keys everywhere and no host name."""
    return {
        "platform": platform.platform(),
        "architecture": platform.machine(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "gpus": _gpus(),
        "python": platform.python_version(),
        "versions": {name: _version(name) for name in VERSIONS},
    }


def _load(load: Mapping[str, object] | argparse.Namespace | None) -> dict[str, object]:
    if load is None:
        return {}
    return dict(vars(load) if isinstance(load, argparse.Namespace) else load)


def results_document(
    name: str, figures: Mapping[str, object], load: Mapping[str, object] | argparse.Namespace | None = None
) -> dict[str, object]:
    """The document ``write_results`` writes: ``load`` is what the benchmark was asked to do (its parsed
    arguments, or a mapping of its sizes), ``figures`` what it measured."""
    return {
        "benchmark": name,
        "machine": machine(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "load": _load(load),
        "figures": dict(figures),
    }


def _plain(value: object) -> object:
    """JSON for what ``json`` does not know: numpy scalars and arrays (without importing numpy), paths, the rest
    as text."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def write_results(
    name: str,
    figures: Mapping[str, object],
    load: Mapping[str, object] | argparse.Namespace | None = None,
    path: str | os.PathLike[str] | None = None,
) -> Path:
    """Write the results document of benchmark ``name`` atomically to ``path`` (default
    ``benchmarks/results/<name>.json``) and return the path. NaN is written as ``NaN``, as Python's json reads it."""
    target = Path(path) if path is not None else results_path(name)
    document = results_document(name, figures, load)
    return write_text_atomic(json.dumps(document, indent=2, default=_plain) + "\n", target)


def read_figures(path: str | os.PathLike[str]) -> dict:
    """The figures of a results file; a file written before this schema (no ``figures``) is all figures."""
    document = json.loads(Path(path).read_text(encoding="utf-8"))
    return document["figures"] if "benchmark" in document and "figures" in document else document


def _cell(value: object) -> str:
    return "-" if value is None else str(value).replace("|", "\\|")


def markdown_table(rows: Iterable[Mapping[str, object]], right: Iterable[str] = ()) -> str:
    """A markdown table of ``rows`` (one dict each; columns in first-seen key order, a missing cell and ``None``
    as ``-``), its columns padded to line up; ``right``: the columns aligned right."""
    rows = list(rows)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    if not columns:
        return ""
    right = set(right)
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [max(3, len(_cell(column)), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)]

    def line(values: Iterable[str]) -> str:
        padded = (
            value.rjust(width) if column in right else value.ljust(width)
            for value, width, column in zip(values, widths, columns, strict=True)
        )
        return "| " + " | ".join(padded) + " |"

    rule = ("-" * (w - 1) + ":" if c in right else "-" * w for c, w in zip(columns, widths, strict=True))
    return "\n".join([line(map(_cell, columns)), line(rule), *(line(values) for values in cells)])
