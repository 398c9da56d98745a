"""Writing a screening's outputs: ``candidates.parquet``, ``report.json`` and a self-contained ``report.html``.

All three are written atomically (temp file + rename), so a reader never sees a half-written report.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from tuneahead_ray._private.atomic import write_bytes_atomic, write_parquet_atomic
from tuneahead_ray.constants import GO, PROBED
from tuneahead_ray.report._html import render_html
from tuneahead_ray.screening import GridSpec, ScreeningResult

__all__ = ["DATASET_FLAGS", "REPORT_VERSION", "dataset_flags", "report_payload", "write_report"]

REPORT_VERSION = 1
#: SHAP waterfalls the report shows, of GO runs and of rejected ones each.
WATERFALLS = 5

#: Dataset diagnostics: descriptor, limit, and what exceeding it usually means for fine-tuning.
DATASET_FLAGS: tuple[tuple[str, float, str], ...] = (
    ("exact_duplicate_rate", 0.10, "many exact duplicates: the run memorises a few records"),
    ("near_duplicate_rate", 0.20, "many near-duplicates: less diverse data than its size suggests"),
    ("conflicting_response_rate", 0.05, "repeated prompts answered differently: likely wrong or inconsistent labels"),
    ("embedding_outlier_ratio", 0.15, "many embedding outliers: off-topic or corrupted records"),
    ("special_char_ratio", 0.15, "many special characters: markup or encoding debris"),
)

_CANDIDATE_FIELDS = (
    "rank", "candidate_id", "dataset_name", "dataset", "stage", "decision", "predicted", "lower", "upper",
    "p_success", "predicted_gain", "novelty", "novel", "novel_features", "full_cost_s", "probe_cost_s", "go_cost_s",
    "reason", "diagnostics",
)  # fmt: skip


def _finite(value: object) -> object:
    """JSON-safe value: NaN/inf as None, numpy scalars as Python ones, containers recursively."""
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dataset_flags(row: pd.Series, medians: pd.Series | None = None) -> list[str]:
    """Plain-language warnings for a dataset's descriptors (see :data:`DATASET_FLAGS`).

    With ``medians`` (the grid's datasets' medians, given when it has at least three datasets) a dataset is only
    flagged where it also stands out from the others by half again: task data that repeats by nature (a small
    world of entities) is not flagged as a whole.
    """
    flags = []
    for name, limit, text in DATASET_FLAGS:
        value = row.get(name, np.nan)
        if not np.isfinite(value) or value <= limit:
            continue
        if medians is not None and name in medians and value <= 1.5 * medians[name]:
            continue
        typical = f", grid median {medians[name]:.2f}" if medians is not None and name in medians else ""
        flags.append(f"{text} ({name.replace('_', ' ')} {value:.2f}{typical})")
    return flags


def _featured(result: ScreeningResult) -> list[str]:
    """Ids of the candidates whose SHAP waterfalls the report shows: the best GO runs and the best rejected."""
    table = result.table
    probed = table[table["stage"].eq(PROBED) & table["candidate_id"].isin(result.explanations)]
    go = probed[probed["decision"].eq(GO)].head(WATERFALLS)
    rejected = probed[probed["decision"].ne(GO)].head(WATERFALLS)
    return [*go["candidate_id"], *rejected["candidate_id"]]


def report_payload(result: ScreeningResult, grid: GridSpec) -> dict:
    """The screening as one JSON-safe dict (what ``report.json`` holds)."""
    table = result.table
    candidates = []
    for record in table.to_dict("records"):
        row = {key: record.get(key) for key in _CANDIDATE_FIELDS}
        row["hp"] = json.loads(record["hp"])
        candidates.append(row)
    datasets = result.datasets.copy()
    medians = datasets.median(numeric_only=True) if len(datasets) >= 3 else None
    datasets["flags"] = [dataset_flags(row, medians) for _, row in datasets.iterrows()]
    summary = dict(result.summary)
    timing = summary.pop("timing_s", {})
    return _finite(
        {
            "report_version": REPORT_VERSION,
            "grid": grid.model_dump(mode="json"),
            "summary": summary,
            "candidates": candidates,
            "datasets": datasets.to_dict("records"),
            "importance": result.importance,
            "explanations": {key: result.explanations[key] for key in _featured(result)},
            "failures": [{"candidate_id": f.key, "error": f.error, "attempts": f.attempts} for f in result.failures],
            "timing_s": timing,
        }
    )


def write_report(result: ScreeningResult, grid: GridSpec, out_dir: str | Path) -> dict[str, Path]:
    """Write the three outputs into ``out_dir``; return their paths by kind."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "parquet": out_dir / "candidates.parquet",
        "json": out_dir / "report.json",
        "html": out_dir / "report.html",
    }
    write_parquet_atomic(pa.Table.from_pandas(result.table, preserve_index=False), paths["parquet"])
    payload = report_payload(result, grid)
    write_bytes_atomic((json.dumps(payload, indent=1, allow_nan=False) + "\n").encode("utf-8"), paths["json"])
    write_bytes_atomic(render_html(payload, result).encode("utf-8"), paths["html"])
    return paths
