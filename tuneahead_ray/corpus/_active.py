"""Which runs to train next when building a corpus: active selection from a candidate pool.

Strategies:
  * ``random`` — a uniform sample of the pool (ignores the predictor).
  * ``uncertainty`` — the widest prediction intervals (``predictor.predict_interval``). With the ``cv`` interval
    method every run has the same width, so this is random selection; it needs ``cv-normalized`` intervals.
  * ``decision`` — half the batch: the runs whose GO/NO-GO is least certain, P(score >= threshold) read from the
    prediction interval by :func:`tuneahead_ray.screening.success_probability` closest to 0.5; the other half:
    the widest intervals among the rest (random when the widths tie). On the shipped corpus the plain rule
    (the whole batch nearest P = 0.5) piles the corpus up around the threshold and the predictor's held-out
    RMSE at 400 runs was 7.0 pp against random selection's 5.7; the blend measured best of the diversity
    variants tried (``benchmarks/cold_start.py``, docs/accuracy.md).

With no predictor yet (nothing trained) every strategy is random. :func:`estimated_rmse` reads a fitted
predictor's own out-of-sample error (its cross-fitted calibration residuals), and :func:`plateau` says at which
corpus size doubling it stopped improving that estimate, i.e. when more runs stop paying for themselves.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from enum import Enum
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from tuneahead_ray.screening import success_probability

if TYPE_CHECKING:
    from tuneahead_ray.predictor import ScorePredictor

__all__ = ["Strategy", "estimated_rmse", "pick_batch", "plateau"]


class Strategy(str, Enum):
    """How :func:`pick_batch` chooses the next runs to train."""

    RANDOM = "random"
    UNCERTAINTY = "uncertainty"
    DECISION = "decision"


def _strategy(value: Strategy | str) -> Strategy:
    try:
        return Strategy(value)
    except ValueError:
        choices = ", ".join(s.value for s in Strategy)
        raise ValueError(f"unknown strategy {value!r}: choose one of {choices}") from None


def _lowest(key: np.ndarray, take: int, rng: np.random.Generator) -> np.ndarray:
    """Positions of the ``take`` lowest ``key`` values, ties broken at random."""
    return np.lexsort((rng.random(len(key)), key))[:take]


def pick_batch(
    strategy: Strategy | str,
    pool: pd.DataFrame,
    predictor: ScorePredictor | None,
    size: int,
    *,
    threshold: float,
    seed: int,
) -> np.ndarray:
    """Positional indexes into ``pool`` of the next runs to train: at most ``size``, distinct, best first.

    ``predictor`` is the predictor fitted on the runs trained so far (``None`` before any: random selection);
    ``threshold`` is the GO/NO-GO score threshold the ``decision`` strategy targets; ``seed`` drives the random
    choice and breaks ties.
    """
    strategy = _strategy(strategy)
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    if not math.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold!r}")
    rng = np.random.default_rng(seed)
    take = min(int(size), len(pool))
    if take == 0:
        return np.empty(0, dtype=np.intp)
    if strategy is Strategy.RANDOM or predictor is None:
        return rng.choice(len(pool), size=take, replace=False).astype(np.intp)
    lower, upper = (np.asarray(end, dtype=float) for end in predictor.predict_interval(pool))
    width_order = _lowest(-(upper - lower), len(pool), rng)
    if strategy is Strategy.UNCERTAINTY:
        return width_order[:take].astype(np.intp)
    predicted = np.asarray(predictor.predict(pool), dtype=float)
    probability = success_probability(predicted, lower, upper, threshold, level=predictor.config.level)
    decided = _lowest(np.abs(probability - 0.5), take - take // 2, rng)
    widest = width_order[~np.isin(width_order, decided)][: take // 2]
    return np.r_[decided, widest].astype(np.intp)


def estimated_rmse(predictor: ScorePredictor) -> float:
    """The predictor's own out-of-sample RMSE estimate: the RMSE of its cross-fitted (or split) calibration
    residuals, recorded by :meth:`ScorePredictor.fit`."""
    value = getattr(predictor, "metrics", {}).get("calibration_rmse")
    if value is None:
        raise ValueError("the predictor has no calibration_rmse: fit it first")
    return float(value)


def plateau(runs: Sequence[int], errors: Sequence[float], *, tolerance: float = 0.05) -> int | None:
    """Index of the first refit at which doubling the corpus stopped paying, or ``None`` while it still pays.

    ``errors[i]`` is the estimated error of a predictor fitted on ``runs[i]`` runs (increasing). Refit ``i`` has
    stopped paying when its error is not more than ``tolerance`` (relative) below the error of the last refit on
    at most half as many runs. Measured per doubling, not per batch: at a fixed batch size the gain of each
    batch shrinks as the corpus grows, while the gain of a doubling is what deciding to build on weighs.
    """
    if not 0 <= tolerance < 1:
        raise ValueError(f"tolerance must be in [0, 1), got {tolerance!r}")
    sizes, values = [int(r) for r in runs], [float(e) for e in errors]
    if len(sizes) != len(values):
        raise ValueError(f"runs and errors differ in length ({len(sizes)} and {len(values)})")
    if any(not math.isfinite(e) or e < 0 for e in values):
        raise ValueError("errors must be finite and non-negative")
    if any(b <= a for a, b in itertools.pairwise(sizes)) or any(r < 1 for r in sizes):
        raise ValueError("runs must be positive and increasing")
    for i, size in enumerate(sizes):
        halves = [j for j in range(i) if sizes[j] <= size / 2]
        if halves and values[i] > values[halves[-1]] * (1 - tolerance):
            return i
    return None
