"""Compute costs of candidate runs, in worker-seconds (GPU-seconds on GPUs), and the budget in the same unit."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tuneahead_ray.screening._grid import Budget, CostModel

__all__ = ["budget_seconds", "dataset_probe_costs", "full_run_seconds", "full_run_tokens", "run_costs"]


def full_run_tokens(table: pd.DataFrame) -> np.ndarray:
    """Training tokens of each full run: steps x batch size x mean tokens per example (cut at max_seq_len)."""
    per_example = np.minimum(table["total_tokens_mean"].to_numpy(float), table["hp_max_seq_len"].to_numpy(float))
    return table["hp_total_steps"].to_numpy(float) * table["hp_batch_size"].to_numpy(float) * per_example


def full_run_seconds(table: pd.DataFrame, model: CostModel) -> np.ndarray:
    """Worker-seconds of each full run under the cost model.

    ``measured`` uses each probed run's own seconds per token (probe time / probe tokens) and, for runs that were
    not probed, the median rate of those that were.
    """
    tokens = full_run_tokens(table)
    if model.kind == "tokens" or "probe_seconds" not in table:
        return tokens / model.tokens_per_second
    rate = (table["probe_seconds"] / table["probe_tokens"].where(table["probe_tokens"] > 0)).to_numpy(float)
    known = np.isfinite(rate)
    fallback = float(np.median(rate[known])) if known.any() else 1.0 / model.tokens_per_second
    return tokens * np.where(known, rate, fallback)


def run_costs(table: pd.DataFrame, model: CostModel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per run: the full run, its probe (the probe's measured seconds under ``measured``, else its share of the
    steps) and the rest of the run a GO resumes after the probe, in worker-seconds."""
    full = full_run_seconds(table, model)
    if model.kind == "measured" and "probe_seconds" in table:
        probe = table["probe_seconds"].fillna(0).to_numpy(float)
    else:
        probe = full * (table["probe_steps"].fillna(0) / table["hp_total_steps"]).to_numpy(float)
    return full, probe, np.maximum(full - probe, 0.0)


def dataset_probe_costs(rows: list[dict], model: CostModel) -> list[float]:
    """Each dataset probe's cost in worker-seconds, once per dataset: its measured seconds under ``measured``,
    else its tokens at the cost model's rate."""
    if model.kind == "measured":
        return [float(row["dataset_probe_seconds"]) for row in rows]
    return [float(row["dataset_probe_tokens"]) / model.tokens_per_second for row in rows]


def budget_seconds(budget: Budget, full_costs: np.ndarray) -> float:
    """The budget in worker-seconds; ``full_runs`` counts average full runs of the grid."""
    if budget.gpu_hours is not None:
        return budget.gpu_hours * 3600.0
    return float(budget.full_runs * np.mean(full_costs)) if len(full_costs) else 0.0
