"""What the HTTP app needs from a model: batched predictions with intervals, SHAP explanations, and candidate
featurization. :class:`ModelBackend` does it in-process; the Serve ingress subclasses it to batch requests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from tuneahead_ray.predictor import Explainer, Explanation, ModelCard, ScorePredictor
from tuneahead_ray.schemas import Candidate

__all__ = ["ModelBackend", "PredictorBackend", "RowPredictions", "predict_matrices"]

#: Computes a candidate's feature row (e.g. :meth:`CandidateFeaturizer.features`).
Featurize = Callable[[Candidate], dict[str, Any]]


@dataclass(frozen=True)
class RowPredictions:
    """Predictions, interval ends and novelty for one request's rows, and the size of the model call that made
    them."""

    prediction: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    novelty: np.ndarray
    novel: np.ndarray
    novel_features: list[list[str]]
    batch_requests: int
    batch_rows: int


class PredictorBackend(Protocol):
    predictor: ScorePredictor
    card: ModelCard

    async def predict(self, x: np.ndarray) -> RowPredictions: ...

    async def explain(self, x: np.ndarray, top_k: int) -> list[Explanation]: ...

    async def candidate_row(self, candidate: Candidate) -> dict[str, Any]: ...


#: LightGBM predicts on all cores unless told otherwise (its training threads do not carry over), and on a busy
#: machine the OpenMP hand-off costs far more than the trees: a 1-row call takes ~1-8 ms on 2 busy cores against
#: 0.05 ms on one thread. A request is at most ``max_rows`` rows, so one thread per call, and the other cores serve
#: the other requests.
PREDICT_PARAMS = {"num_threads": 1}


def predict_matrices(predictor: ScorePredictor, matrices: Sequence[np.ndarray]) -> list[RowPredictions]:
    """One model call for several requests' input matrices; the results are split back per request.

    Equal to ``predictor.predict`` and ``predictor.predict_interval`` row by row (trees score rows independently).
    """
    x = matrices[0] if len(matrices) == 1 else np.concatenate(matrices)
    prediction = predictor.predict_matrix(x, **PREDICT_PARAMS)
    novelty, novel, drivers = predictor.novelty_of(x)
    half_width = predictor.half_widths(x, novelty, **PREDICT_PARAMS)
    ends = np.cumsum([len(m) for m in matrices])
    starts = [0, *ends[:-1]]
    return [
        RowPredictions(
            prediction[a:b],
            prediction[a:b] - half_width[a:b],
            prediction[a:b] + half_width[a:b],
            novelty[a:b],
            novel[a:b],
            drivers[a:b],
            len(matrices),
            len(x),
        )  # fmt: skip
        for a, b in zip(starts, ends, strict=True)
    ]


class ModelBackend:
    """A loaded predictor served in-process: model work runs in worker threads, off the event loop."""

    def __init__(self, predictor: ScorePredictor, card: ModelCard, featurize: Featurize | None = None) -> None:
        self.predictor, self.card, self.featurize = predictor, card, featurize
        self.explainer = Explainer(predictor)

    async def predict(self, x: np.ndarray) -> RowPredictions:
        (result,) = await asyncio.to_thread(predict_matrices, self.predictor, [x])
        return result

    async def explain(self, x: np.ndarray, top_k: int) -> list[Explanation]:
        table = pd.DataFrame(x, columns=self.predictor.features)
        return await asyncio.to_thread(self.explainer.explain, table, top_k)

    async def candidate_row(self, candidate: Candidate) -> dict[str, Any]:
        if self.featurize is None:
            raise RuntimeError("this backend has no featurizer")
        return await asyncio.to_thread(self.featurize, candidate)
