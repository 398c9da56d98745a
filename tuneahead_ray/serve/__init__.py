"""The prediction service: a Ray Serve application (FastAPI ingress, batched predictions, autoscaled replicas)
with ``POST /v1/predict``, ``POST /v1/explain``, ``GET /v1/model`` and ``GET /healthz``.

``build_app`` is the builder that ``configs/serve.yaml`` names; ``create_fastapi_app`` serves the same API from
an in-process :class:`ModelBackend`, without Ray. :func:`apply_serve_environment` sets the Ray environment it is
tuned for (HAProxy in front of the replicas) before Ray starts.
"""

from tuneahead_ray.serve._app import create_fastapi_app
from tuneahead_ray.serve._backend import ModelBackend, PredictorBackend, RowPredictions
from tuneahead_ray.serve._config import ServeConfig
from tuneahead_ray.serve._deployments import bind_app, build_app
from tuneahead_ray.serve._environment import (
    HAPROXY_ENVIRONMENT,
    HAPROXY_PORTS,
    SERVE_ENVIRONMENT,
    apply_serve_environment,
)

__all__ = [
    "HAPROXY_ENVIRONMENT",
    "HAPROXY_PORTS",
    "ModelBackend",
    "PredictorBackend",
    "RowPredictions",
    "SERVE_ENVIRONMENT",
    "ServeConfig",
    "apply_serve_environment",
    "bind_app",
    "build_app",
    "create_fastapi_app",
]
