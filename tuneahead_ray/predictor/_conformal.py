"""Conformal prediction intervals from out-of-sample residuals, absolute or normalized by a local error scale."""

from __future__ import annotations

import math
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np

__all__ = ["ConformalInterval", "conformal_quantile", "interval_coverage"]


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The ``ceil((n + 1) * level)``-th smallest absolute score: the finite-sample conformal quantile.

    With too few scores for the level (``ceil((n + 1) * level) > n``) the interval is unbounded (``inf``).
    """
    ordered = np.sort(np.abs(np.asarray(scores, dtype=float)))
    rank = math.ceil((len(ordered) + 1) * level)
    return float(ordered[rank - 1]) if rank <= len(ordered) else math.inf


def interval_coverage(y_true: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Share of ``y_true`` inside ``[lower, upper]``."""
    y_true = np.asarray(y_true, dtype=float)
    return float(np.mean((y_true >= lower) & (y_true <= upper)))


@dataclass(frozen=True)
class ConformalInterval:
    """prediction ± ``quantile`` · max(scale(x), ``floor``), covering the target with probability ``level``.

    Without a ``scale`` model the half-width is ``quantile`` everywhere (absolute residuals). With one (a
    regressor of |residual|), scores were residuals divided by the scale, so the interval is narrow where the
    model is usually right and wide where it is not; ``floor`` keeps a tiny predicted scale from collapsing it.
    """

    level: float
    quantile: float
    scale: lgb.Booster | None = None
    floor: float = 0.0

    def half_widths(self, x: np.ndarray, **predict_params) -> np.ndarray:
        """Half-widths at rows ``x``; ``predict_params`` go to the scale model's ``predict`` (e.g. num_threads)."""
        if self.scale is None:
            return np.full(len(x), self.quantile)
        return self.quantile * np.maximum(self.scale.predict(x, **predict_params), self.floor)
