"""The HTTP client: what it sends (token, routes, NaN as null) and typed errors for every non-2xx answer."""

from __future__ import annotations

import json
import math

import httpx
import pytest

from tuneahead_ray.client import ClientError, TuneAheadClient
from tuneahead_ray.schemas import Candidate, DatasetRef, HyperParams


def recording_client(reply: httpx.Response, token: str | None = "tok") -> tuple[TuneAheadClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return reply

    return TuneAheadClient("http://svc", token=token, transport=httpx.MockTransport(handle)), seen


def test_rows_go_to_predict_with_the_token_and_nan_as_null() -> None:
    client, seen = recording_client(httpx.Response(200, json={"predictions": []}))
    assert client.predict([{"a": 1.0, "b": math.nan, "c": None}]) == {"predictions": []}
    request = seen[0]
    assert (request.method, request.url.path) == ("POST", "/v1/predict")
    assert request.headers["authorization"] == "Bearer tok"
    assert json.loads(request.content) == {"rows": [{"a": 1.0, "b": None, "c": None}]}


def test_each_method_uses_its_route() -> None:
    client, seen = recording_client(httpx.Response(200, json={}), token=None)
    client.explain([{"a": 1}], top_k=3)
    client.model_card()
    client.health()
    spec = Candidate(model="default", dataset=DatasetRef(path="/data/x.jsonl"), hp=HyperParams(lr=1e-3))
    client.predict_candidates([spec, {"model": "default", "dataset": {"path": "y.jsonl"}}])
    assert [(r.method, r.url.path) for r in seen] == [
        ("POST", "/v1/explain"),
        ("GET", "/v1/model"),
        ("GET", "/healthz"),
        ("POST", "/v1/predict"),
    ]
    assert "authorization" not in seen[0].headers
    assert json.loads(seen[0].content) == {"rows": [{"a": 1}], "top_k": 3}
    candidates = json.loads(seen[3].content)["candidates"]
    assert candidates[0]["dataset"] == {"path": "/data/x.jsonl", "format": "auto"}
    assert candidates[0]["hp"]["lr"] == 1e-3 and candidates[1] == {"model": "default", "dataset": {"path": "y.jsonl"}}


@pytest.mark.parametrize(
    ("reply", "status", "error", "detail"),
    [
        (httpx.Response(422, json={"error": "wrong_columns", "detail": "rows[0]: missing 'a'"}), 422, "wrong_columns",
         "rows[0]: missing 'a'"),
        (httpx.Response(401, json={"error": "unauthorized", "detail": "invalid bearer token"}), 401, "unauthorized",
         "invalid bearer token"),
        (httpx.Response(503, text="Service Unavailable"), 503, "http_503", "Service Unavailable"),
        (httpx.Response(500, json={"unexpected": True}), 500, "http_500", '{"unexpected":true}'),
    ],
)  # fmt: skip
def test_errors_raise_a_typed_client_error(reply, status, error, detail) -> None:
    client, _ = recording_client(reply)
    with pytest.raises(ClientError) as caught:
        client.predict([{"a": 1.0}])
    assert (caught.value.status, caught.value.error, caught.value.detail) == (status, error, detail)
    assert str(caught.value) == f"HTTP {status} {error}: {detail}"


def _flaky(statuses: list[int]) -> tuple[TuneAheadClient, list[int]]:
    """A client whose server answers ``statuses`` in turn (then 200), counting the requests."""
    calls: list[int] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        status = statuses[len(calls) - 1] if len(calls) <= len(statuses) else 200
        body = {"status": "ok"} if status == 200 else {"error": "internal", "detail": "replica died"}
        return httpx.Response(status, json=body)

    return TuneAheadClient("http://svc", transport=httpx.MockTransport(handle), retries=2, backoff_s=0), calls


def test_server_side_failures_are_retried_and_client_errors_are_not() -> None:
    client, calls = _flaky([500, 503])
    assert client.health() == {"status": "ok"} and len(calls) == 3
    client, calls = _flaky([500, 500, 500])
    with pytest.raises(ClientError) as failed:
        client.health()
    assert failed.value.status == 500 and len(calls) == 3  # the bound: 1 + 2 retries
    client, calls = _flaky([422])
    with pytest.raises(ClientError):
        client.health()
    assert len(calls) == 1
