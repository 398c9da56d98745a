"""The Ray Serve application: the ``ScoreService`` ingress (FastAPI, batched predictions) and the
``FeatureWorker`` that featurizes candidate specs with the base model loaded once.

Deployment options here are defaults for code-built apps; ``configs/serve.yaml`` overrides them by name.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import numpy as np
from fastapi import FastAPI
from ray import serve
from ray.exceptions import RayTaskError
from ray.serve.handle import DeploymentHandle

from tuneahead_ray.predictor import load_predictor, read_card
from tuneahead_ray.schemas import Candidate
from tuneahead_ray.serve._app import create_fastapi_app
from tuneahead_ray.serve._backend import ModelBackend, RowPredictions, predict_matrices
from tuneahead_ray.serve._candidates import CandidateFeaturizer, protocol_problems
from tuneahead_ray.serve._config import ServeConfig

__all__ = ["FeatureWorker", "ScoreService", "bind_app", "build_app"]

FeatureWorker = serve.deployment(
    name="FeatureWorker",
    max_ongoing_requests=1,  # one probe at a time per base model; more queue at the caller
    ray_actor_options={"num_cpus": 1},
    max_constructor_retry_count=3,
)(CandidateFeaturizer)


@serve.deployment(
    name="ScoreService",
    max_ongoing_requests=64,  # room for two full batches, so a replica batches instead of queueing at the proxy
    ray_actor_options={"num_cpus": 0.5},
    max_constructor_retry_count=3,
)
@serve.ingress()
class ScoreService(ModelBackend):
    """Loads the predictor from the model store (a tampered store raises here, so the deployment fails) and
    serves the FastAPI app of :func:`create_fastapi_app`; concurrent small requests share one model call."""

    def __init__(self, config: ServeConfig, feature_worker: DeploymentHandle | None = None) -> None:
        predictor, card = load_predictor(config.model_dir)
        super().__init__(predictor, card)
        self.config, self.feature_worker = config, feature_worker
        self._predict_batched.set_max_batch_size(config.max_batch_size)
        self._predict_batched.set_batch_wait_timeout_s(config.batch_wait_timeout_s)

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_fastapi_app(self, self.config)

    @serve.batch  # sized from the config in __init__
    async def _predict_batched(self, matrices: list[np.ndarray]) -> list[RowPredictions]:
        return await asyncio.to_thread(predict_matrices, self.predictor, matrices)

    async def predict(self, x: np.ndarray) -> RowPredictions:
        # Batching pays for small requests; a large one gains nothing from the queue (one batch runs at a time) and
        # is predicted on its own thread, as the plain backend does (LightGBM releases the GIL while it predicts).
        if len(x) >= self.config.max_batch_size:
            return await super().predict(x)
        return await self._predict_batched(x)

    async def candidate_row(self, candidate: Candidate) -> dict[str, Any]:
        # Only reached with a data_root, which is when bind_app gives the ingress a FeatureWorker.
        try:
            return await self.feature_worker.features.remote(candidate)
        except RayTaskError as err:
            if isinstance(err.cause, ValueError):  # a bad dataset: the caller turns it into a 4xx
                raise err.cause from None
            raise


def bind_app(config: ServeConfig, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> serve.Application:
    """The application for ``config``, with per-deployment option ``overrides`` (by deployment name, as in the
    ``deployments`` list of a Serve config file). The FeatureWorker exists only when candidate specs are on."""
    config = config.resolved()
    overrides = overrides or {}
    names = {"ScoreService", "FeatureWorker"} if config.data_root is not None else {"ScoreService"}
    unknown = sorted(set(overrides) - names)
    if unknown:  # as Serve refuses them in a config file
        raise ValueError(f"options for deployment(s) {unknown} that this app does not have (it has {sorted(names)})")
    worker = None
    if config.data_root is not None:
        options = overrides.get("FeatureWorker", {})
        card = read_card(config.model_dir)
        problems = protocol_problems(card.feature_protocol, config.probe, card.features)
        if problems:  # every prediction would read features the model never saw
            raise ValueError(f"{config.model_dir}: specs would be featurized otherwise: {'; '.join(problems)}")
        worker = FeatureWorker.options(**options).bind(
            config.base_model, config.probe, config.device, card.features, card.feature_protocol
        )
    return ScoreService.options(**overrides.get("ScoreService", {})).bind(config, worker)


def build_app(args: dict[str, Any]) -> serve.Application:
    """The application builder of ``serve run`` / ``serve deploy`` (``import_path: tuneahead_ray.serve:build_app``);
    ``args`` are :class:`ServeConfig` fields."""
    return bind_app(ServeConfig.model_validate(args))
