"""A small client of the prediction service (:mod:`tuneahead_ray.serve`) over HTTP, built on httpx.

Responses are the service's JSON bodies as dicts; any 4xx/5xx raises :class:`ClientError` with the service's
error code and message (after retries, for server-side failures). Connection failures and timeouts raise httpx's
own exceptions.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
from pydantic import BaseModel

__all__ = ["ClientError", "TuneAheadClient"]


class ClientError(Exception):
    """The service refused or failed a request: HTTP ``status``, its ``error`` code and ``detail`` message."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(f"HTTP {status} {error}: {detail}")
        self.status, self.error, self.detail = status, error, detail


def _missing_as_null(row: Mapping[str, Any]) -> dict[str, Any]:
    """NaN means *missing* in a meta-feature row; JSON has no NaN, the service reads ``null`` as missing."""
    return {name: None if isinstance(value, float) and math.isnan(value) else value for name, value in row.items()}


def _spec(candidate: Mapping[str, Any] | BaseModel) -> Any:
    return candidate.model_dump(mode="json") if isinstance(candidate, BaseModel) else dict(candidate)


def _raise_for_error(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        body = response.json()
        error, detail = str(body["error"]), str(body["detail"])
    except (ValueError, KeyError, TypeError):
        error, detail = f"http_{response.status_code}", response.text[:500]
    raise ClientError(response.status_code, error, detail)


#: Answers that mean "the server side failed, not the request": a replica that died with the request in flight
#: (Serve answers 500), or a proxy with no replica ready yet. Every route is a pure function, so retrying is safe.
RETRY_STATUSES = frozenset({500, 502, 503, 504})


class TuneAheadClient:
    """``TuneAheadClient("http://127.0.0.1:8000", token=...)``; usable as a context manager.

    A request that meets a server-side failure (:data:`RETRY_STATUSES`, a dropped connection) is retried up to
    ``retries`` times with exponential backoff from ``backoff_s``; 4xx answers are never retried.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        retries: int = 2,
        backoff_s: float = 0.2,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout, transport=transport)
        self.retries, self.backoff_s = retries, backoff_s

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = self._http.request(method, path, json=body)
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError):
                if last:
                    raise
            else:
                if response.status_code not in RETRY_STATUSES or last:
                    _raise_for_error(response)
                    return response.json()
            time.sleep(self.backoff_s * 2**attempt)
        raise AssertionError("unreachable")

    def predict(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Predictions for meta-feature rows: ``{"model", "predictions": [{"prediction", "lower", "upper"}],
        "batch"}``; NaN values are sent as missing."""
        return self._request("POST", "/v1/predict", {"rows": [_missing_as_null(row) for row in rows]})

    def predict_candidates(self, candidates: Sequence[Mapping[str, Any] | BaseModel]) -> dict[str, Any]:
        """Predictions for candidate specs (``{"model", "dataset": {"path"}, "hp"}``), featurized by the server."""
        return self._request("POST", "/v1/predict", {"candidates": [_spec(c) for c in candidates]})

    def explain(self, rows: Sequence[Mapping[str, Any]], top_k: int = 5) -> dict[str, Any]:
        """SHAP explanations of meta-feature rows: the ``top_k`` contributions and diagnostics per row."""
        return self._request("POST", "/v1/explain", {"rows": [_missing_as_null(row) for row in rows], "top_k": top_k})

    def model_card(self) -> dict[str, Any]:
        """``{"model": version, "card": the model card}``."""
        return self._request("GET", "/v1/model")

    def health(self) -> dict[str, Any]:
        return self._request("GET", "/healthz")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> TuneAheadClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
