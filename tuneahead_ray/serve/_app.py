"""The HTTP API as a FastAPI app over any :class:`PredictorBackend`: the Serve ingress uses it, and so can a
plain ASGI server or an in-process test client."""

from __future__ import annotations

import asyncio
import math

import numpy as np
from fastapi import FastAPI

from tuneahead_ray import __version__
from tuneahead_ray.predictor import Explanation, ModelCard
from tuneahead_ray.serve._auth import BearerAuthMiddleware, load_token
from tuneahead_ray.serve._backend import PredictorBackend
from tuneahead_ray.serve._candidates import candidate_from_spec, model_features_of
from tuneahead_ray.serve._config import ServeConfig
from tuneahead_ray.serve._errors import ApiError, install_error_handlers
from tuneahead_ray.serve._limits import BodyLimitMiddleware
from tuneahead_ray.serve._rows import check_row_count, feature_matrix, rows_matrix
from tuneahead_ray.serve._schemas import (
    BatchInfo,
    CandidateSpec,
    ContributionOut,
    ErrorBody,
    ExplainRequest,
    ExplainResponse,
    ExplanationOut,
    HealthResponse,
    ModelResponse,
    ModelVersion,
    Prediction,
    PredictRequest,
    PredictResponse,
)

__all__ = ["create_fastapi_app"]

_DESCRIPTION = """Predicts the final score of a LoRA fine-tuning run before it is trained (TuneAhead), with a
conformal interval and SHAP explanations. Send `Authorization: Bearer <token>` on every route but `/healthz` when
the server has a token. Errors are JSON `{"error": code, "detail": message}`."""
_ERRORS = {status: {"model": ErrorBody} for status in (400, 401, 403, 413, 422)}


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def model_version(card: ModelCard) -> ModelVersion:
    return ModelVersion(
        card_sha256=card.card_sha256, created=card.created, target=card.target, level=card.interval.level
    )


def _explanation_out(explanation: Explanation, candidate_id: str | None) -> ExplanationOut:
    top = [
        ContributionOut(feature=c.feature, label=c.label, value=_finite(c.value), contribution=c.contribution)
        for c in explanation.top
    ]
    return ExplanationOut(
        prediction=explanation.prediction,
        base_value=explanation.base_value,
        top=top,
        diagnostics=explanation.diagnostics,
        candidate_id=candidate_id,
    )


async def _featurized_rows(
    backend: PredictorBackend, specs: list[CandidateSpec], config: ServeConfig
) -> tuple[list[dict], list[str]]:
    """Feature rows and candidate ids of candidate specs, featurized concurrently (all paths checked first)."""
    check_row_count(len(specs), config.max_candidates, "candidates")
    candidates = [candidate_from_spec(spec, index, config) for index, spec in enumerate(specs)]

    async def featurize(index: int) -> dict:
        try:
            return await backend.candidate_row(candidates[index])
        except ValueError as err:  # DatasetError: unreadable or malformed records; name the client's path
            message = str(err).replace(str(candidates[index].dataset.path), specs[index].dataset.path)
            raise ApiError(422, "bad_dataset", f"candidates[{index}].dataset: {message}") from None

    rows = await asyncio.gather(*(featurize(index) for index in range(len(specs))))
    return model_features_of(rows, backend.predictor.features), [row["candidate_id"] for row in rows]


async def _model_input(
    backend: PredictorBackend, request: PredictRequest, config: ServeConfig
) -> tuple[np.ndarray, list[str] | list[None]]:
    """The request's model input matrix, and the candidate id of each row (None for client rows)."""
    features = backend.predictor.features
    if request.rows is not None:
        return rows_matrix(request.rows, features, config.max_rows), [None] * len(request.rows)
    rows, ids = await _featurized_rows(backend, request.candidates, config)
    return feature_matrix(rows, features), ids


def create_fastapi_app(backend: PredictorBackend, config: ServeConfig) -> FastAPI:
    """The API: ``POST /v1/predict``, ``POST /v1/explain``, ``GET /v1/model``, ``GET /healthz``, docs at /docs.

    Raises ``ValueError`` when a configured token source is unset or empty.
    """
    token = load_token(config)
    version = model_version(backend.card)
    app = FastAPI(title="tuneahead-ray predictor", version=__version__, description=_DESCRIPTION)
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=config.max_body_bytes)
    if token is not None:  # added last: the outermost layer, so no body is read for an unauthenticated request
        app.add_middleware(BearerAuthMiddleware, token=token)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> HealthResponse:
        return HealthResponse(status="ok", model=version)

    @app.get("/v1/model", tags=["model"], responses=_ERRORS)
    async def model_card() -> ModelResponse:
        return ModelResponse(model=version, card=backend.card.model_dump())

    @app.post("/v1/predict", tags=["model"], responses=_ERRORS)
    async def predict(request: PredictRequest) -> PredictResponse:
        x, ids = await _model_input(backend, request, config)
        result = await backend.predict(x)
        columns = (result.prediction.tolist(), result.lower.tolist(), result.upper.tolist(), result.novelty.tolist())
        predictions = [
            Prediction(
                prediction=p,
                lower=_finite(low),
                upper=_finite(high),
                novelty=_finite(novelty),
                novel=bool(novel),
                novel_features=names,
                candidate_id=candidate_id,
            )  # fmt: skip
            for p, low, high, novelty, novel, names, candidate_id in zip(
                *columns, result.novel.tolist(), result.novel_features, ids, strict=True
            )
        ]
        batch = BatchInfo(requests=result.batch_requests, rows=result.batch_rows)
        return PredictResponse(model=version, predictions=predictions, batch=batch)

    @app.post("/v1/explain", tags=["model"], responses=_ERRORS)
    async def explain(request: ExplainRequest) -> ExplainResponse:
        x, ids = await _model_input(backend, request, config)
        explanations = await backend.explain(x, min(request.top_k, x.shape[1]))
        out = [_explanation_out(e, candidate_id) for e, candidate_id in zip(explanations, ids, strict=True)]
        return ExplainResponse(model=version, explanations=out)

    return app
