"""Know when it does not know: how far a candidate lies from the runs the predictor learned from, and intervals
that widen with that distance.

* :class:`NoveltyScore` — the mean distance to the ``k`` nearest training runs in a robustly scaled feature space
  (median / interquartile range per feature, missing values at the median), divided by the training runs' own
  typical distance: about 1 for a candidate like the corpus, larger the further out it lies. The space may be a
  subset of the features (``columns``): the predictor measures it on what describes the dataset (its static
  descriptors and dataset probe), since the hyperparameters of a grid vary by design and would drown the signal.
  ``assess`` also names the features where a candidate lies beyond the corpus's range.
* :class:`NoveltyBins` — Mondrian conformal calibration by novelty: up to the ``widen_from`` quantile of in-sample
  novelty (by default the ``level`` one, where candidates are flagged novel) the interval is the predictor's own;
  beyond it, each novelty bin has its own residual quantile, learnt from residuals of whole clusters of runs held
  out in turn (k-means in the same space): runs unlike anything the model was fitted on calibrate the far bins
  (with too few clusters, or one holding nearly every run, the out-of-fold residuals do). Never narrower than
  in-sample.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import lightgbm as lgb
import numpy as np
from sklearn.cluster import KMeans
from sklearn.neighbors import NearestNeighbors

from tuneahead_ray.predictor._conformal import conformal_quantile

__all__ = ["NEIGHBOURS", "NoveltyBins", "NoveltyScore", "calibrate_novelty"]

#: Nearest training runs a novelty score averages over.
NEIGHBOURS = 5
#: Clusters held out in turn to calibrate the far novelty bins, and the fewest residuals per bin.
_CLUSTERS, _MIN_BIN = 8, 30
_CLIP = 50.0  # scaled units: one absurd value cannot dominate a distance


@dataclass(frozen=True, eq=False)
class NoveltyScore:
    """Distance of candidates from the training runs (see the module docstring)."""

    center: np.ndarray
    scale: np.ndarray
    space: np.ndarray = field(repr=False)
    typical: float
    k: int
    #: The feature columns the distance is measured on (``None``: every one).
    columns: tuple[int, ...] | None = None

    @classmethod
    def fit(cls, x: np.ndarray, k: int = NEIGHBOURS, columns: Sequence[int] | None = None) -> NoveltyScore:
        """The score of training matrix ``x`` (rows = runs) on its ``columns`` (default: all); ``k`` is capped at
        the number of other runs."""
        columns = None if columns is None else tuple(int(i) for i in columns)
        x = _columns(np.asarray(x, dtype=float), columns)
        with np.errstate(all="ignore"):
            center = np.nan_to_num(np.nanmedian(x, axis=0)) if len(x) else np.zeros(x.shape[1])
            iqr = np.nanpercentile(x, 75, axis=0) - np.nanpercentile(x, 25, axis=0)
            std = np.nanstd(x, axis=0)
        scale = np.where(iqr > 1e-12, iqr, np.where(std > 1e-12, std, 1.0))
        scale = np.nan_to_num(scale, nan=1.0)
        space = _scaled(x, center, scale)
        k = max(1, min(k, len(x) - 1))
        distances = NearestNeighbors(n_neighbors=k + 1).fit(space).kneighbors(space)[0][:, 1:]
        typical = float(np.median(distances.mean(axis=1)))
        return cls(center, scale, space, typical if typical > 1e-12 else 1.0, k, columns)

    @cached_property
    def _index(self) -> NearestNeighbors:
        """The k-nearest-neighbour index of the training runs, built on first use."""
        return NearestNeighbors(n_neighbors=self.k).fit(self.space)

    @cached_property
    def _range(self) -> tuple[np.ndarray, np.ndarray]:
        """Per feature, the lowest and highest scaled value of any training run."""
        return self.space.min(axis=0), self.space.max(axis=0)

    def _distance(self, scaled: np.ndarray) -> np.ndarray:
        return self._index.kneighbors(scaled, n_neighbors=self.k)[0].mean(axis=1) / self.typical

    def score(self, x: np.ndarray) -> np.ndarray:
        """Novelty per row of ``x``: mean distance to the ``k`` nearest training runs over the typical one."""
        return self._distance(self._scale(x))

    def _scale(self, x: np.ndarray) -> np.ndarray:
        return _scaled(_columns(np.asarray(x, dtype=float), self.columns), self.center, self.scale)

    def assess(self, x: np.ndarray, features: Sequence[str], top: int = 3) -> tuple[np.ndarray, list[list[str]]]:
        """Per row of ``x`` (all ``features``): its :meth:`score`, and up to ``top`` of the scored features where
        it lies beyond every training run, furthest out first."""
        scaled = self._scale(x)
        names_of = list(features) if self.columns is None else [features[i] for i in self.columns]
        low, high = self._range
        excess = np.maximum(low - scaled, 0) + np.maximum(scaled - high, 0)
        names = []
        for row in excess:
            order = np.argsort(-row, kind="stable")[:top]
            names.append([names_of[i] for i in order if row[i] > 0])
        return self._distance(scaled), names


def _columns(x: np.ndarray, columns: tuple[int, ...] | None) -> np.ndarray:
    return x if columns is None else x[:, list(columns)]


def _scaled(x: np.ndarray, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
    z = (x - center) / scale
    return np.clip(np.where(np.isnan(z), 0.0, z), -_CLIP, _CLIP)


@dataclass(frozen=True)
class NoveltyBins:
    """Half-widths by novelty: none up to ``threshold`` (the predictor's own interval applies); beyond it,
    ``quantiles[i]`` (non-decreasing) in bin ``i``, the bins split at ``edges`` (one fewer than the bins; the
    last bin is open). A candidate beyond ``flag`` (at least ``threshold``) is flagged novel."""

    threshold: float
    edges: tuple[float, ...]
    quantiles: tuple[float, ...]
    flag: float

    def half_widths(self, novelty: np.ndarray) -> np.ndarray:
        """Half-width per row of its novelty bin; 0 at or below ``threshold``."""
        novelty = np.asarray(novelty, dtype=float)
        out = np.zeros(len(novelty))
        beyond = novelty > self.threshold
        index = np.searchsorted(np.asarray(self.edges, dtype=float), novelty[beyond], side="left")
        out[beyond] = np.asarray(self.quantiles)[index]
        return out


def _pairs(
    x: np.ndarray,
    residuals: np.ndarray,
    splits: Sequence[tuple[np.ndarray, np.ndarray]],
    columns: tuple[int, ...] | None,
) -> np.ndarray:
    """(novelty, residual) of each validation row, novelty measured against its split's training rows."""
    pairs = []
    for train, valid in splits:
        pairs.append(np.c_[NoveltyScore.fit(x[train], columns=columns).score(x[valid]), residuals[valid]])
    return np.vstack(pairs)


def calibrate_novelty(
    x: np.ndarray,
    y: np.ndarray,
    out_of_fold: np.ndarray,
    splits: Sequence[tuple[np.ndarray, np.ndarray]],
    params: dict,
    rounds: int,
    level: float,
    seed: int,
    widen_from: float | None = None,
    columns: Sequence[int] | None = None,
) -> tuple[NoveltyScore, NoveltyBins]:
    """The novelty score of ``x`` on its ``columns`` (default: all) and its bins: the thresholds (bins from the
    ``widen_from`` quantile of in-sample novelty, default ``level``; the novel flag from the ``level`` one) and the
    in-sample quantile from the predictor's out-of-sample residuals ``out_of_fold`` (over the validation rows of
    ``splits``), the far bins from a booster of ``rounds`` rounds refit with each k-means cluster held out."""
    score = NoveltyScore.fit(x, columns=columns)
    inside = _pairs(x, out_of_fold, splits, score.columns)
    base = conformal_quantile(inside[:, 1], level)
    flag = float(np.quantile(inside[:, 0], level))
    threshold = min(flag, float(np.quantile(inside[:, 0], level if widen_from is None else widen_from)))
    clusters = min(_CLUSTERS, len(y) // _MIN_BIN)
    pool, held_out = inside, []
    if clusters >= 2:
        labels = KMeans(clusters, n_init=4, random_state=seed).fit_predict(score.space)
        held_out = [(np.flatnonzero(labels != c), np.flatnonzero(labels == c)) for c in range(clusters)]
    # A cluster of nearly every run leaves too few to refit on: the out-of-fold residuals calibrate then.
    if held_out and min(len(train) for train, _ in held_out) >= _MIN_BIN:
        residuals = np.empty_like(y)
        # One after the other: LightGBM boosters trained side by side in threads crashed the process (a segfault
        # in lib_lightgbm during benchmarks/cold_start.py).
        for train, valid in held_out:
            booster = lgb.train(params, lgb.Dataset(x[train], y[train], params={"verbosity": -1}), rounds)
            residuals[valid] = y[valid] - booster.predict(x[valid])
        pool = _pairs(x, residuals, held_out, score.columns)
    far = np.sort(pool[pool[:, 0] > threshold, 0])
    bins = max(1, len(far) // _MIN_BIN)
    edges = [*(float(far[len(far) * i // bins]) for i in range(1, bins)), math.inf]
    quantiles, low = [], threshold
    for high in edges:
        chosen = np.abs(pool[(pool[:, 0] > low) & (pool[:, 0] <= high), 1])
        quantile = conformal_quantile(chosen, level) if len(chosen) else base
        quantiles.append(max(base, quantile if math.isfinite(quantile) else float(chosen.max())))
        low = high
    quantiles = np.maximum.accumulate(quantiles).tolist()
    return score, NoveltyBins(threshold, tuple(edges[:-1]), tuple(float(q) for q in quantiles), flag)
