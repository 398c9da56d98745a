"""Where the scheduler's predictions come from: any object with ``predict_interval`` over a frame of meta-feature
rows (a :class:`~tuneahead_ray.predictor.ScorePredictor`, the default one), or the prediction service over HTTP."""

from __future__ import annotations

import math
from typing import Any, Protocol, runtime_checkable

import httpx
import numpy as np
import pandas as pd

from tuneahead_ray.client import TuneAheadClient
from tuneahead_ray.predictor import ensure_default_predictor, load_predictor

__all__ = ["IntervalPredictor", "ServePredictor", "default_predictor"]


@runtime_checkable
class IntervalPredictor(Protocol):
    """What the scheduler asks: the lower and upper ends of the prediction interval of each row."""

    def predict_interval(self, table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]: ...


def default_predictor() -> IntervalPredictor:
    """The default predictor (static + probe + hyperparameter features of the embedded model), as ``screen``'s
    ``predictor: default``: trained on the shipped corpus on first use, then loaded from the cache."""
    predictor, _ = load_predictor(ensure_default_predictor())
    return predictor


def _number(value: Any) -> float | None:
    """A JSON feature value: a float, or None for missing (NaN)."""
    number = float(value)
    return None if math.isnan(number) else number


class ServePredictor:
    """The prediction service (``tuneahead-ray serve``) as an :class:`IntervalPredictor`: ``POST /v1/predict``
    with each row cut to the served model's features (read once from ``GET /v1/model``).

    It keeps only its settings, never an open connection, so a Tuner can pickle the scheduler holding it.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url, self.token, self.timeout, self.transport = base_url, token, timeout, transport
        self.features: list[str] | None = None

    def _client(self) -> TuneAheadClient:
        return TuneAheadClient(self.base_url, token=self.token, timeout=self.timeout, transport=self.transport)

    def predict_interval(self, table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Interval ends per row; an unbounded end (``null`` in the answer) is -inf / +inf."""
        with self._client() as client:
            if self.features is None:
                self.features = list(client.model_card()["card"]["features"])
            missing = [name for name in self.features if name not in table.columns]
            if missing:
                raise ValueError(f"rows lack the served model's feature(s) {', '.join(map(repr, missing))}")
            rows = [{name: _number(row[name]) for name in self.features} for row in table.to_dict("records")]
            predictions = client.predict(rows)["predictions"]
        lower = np.array([-np.inf if p["lower"] is None else p["lower"] for p in predictions], dtype=float)
        upper = np.array([np.inf if p["upper"] is None else p["upper"] for p in predictions], dtype=float)
        return lower, upper
