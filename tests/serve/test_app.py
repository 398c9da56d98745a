"""The HTTP API in-process (FastAPI TestClient, no Ray): exact predictions, intervals and explanations, bearer
auth on every route but health, and a 4xx JSON error (never a 5xx) for every kind of bad body."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from tests._harness.metadatasets import FAST, synthetic_metadataset
from tuneahead_ray.data import DatasetError
from tuneahead_ray.predictor import ConformalInterval, ScorePredictor, load_predictor, save_predictor
from tuneahead_ray.schemas import Candidate
from tuneahead_ray.serve import ModelBackend, ServeConfig, create_fastapi_app
from tuneahead_ray.serve._backend import predict_matrices

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FEATURES = ["x1", "x2", "noise"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("serve") / "model"
    save_predictor(ScorePredictor(config=FAST).fit(synthetic_metadataset(300, seed=11), "y"), directory)
    return directory


@pytest.fixture(scope="module")
def predictor(model_dir) -> ScorePredictor:
    return load_predictor(model_dir)[0]


@pytest.fixture
def data_root(tmp_path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    (root / "train.jsonl").write_text('{"prompt": "1+1=", "response": "2"}\n')
    (tmp_path / "secret.jsonl").write_text('{"prompt": "p", "response": "r"}\n')
    (root / "escape.jsonl").symlink_to(tmp_path / "secret.jsonl")
    return root


def fake_features(candidate: Candidate) -> dict:
    """A featurizer stand-in: the model's features from the hyperparameters, plus columns it does not read."""
    if candidate.dataset.path.name == "broken.jsonl":
        raise DatasetError(candidate.dataset.path, "expected a JSON object", line=3)
    hp = candidate.hp
    return {
        "candidate_id": candidate.candidate_id(),
        "x1": math.log10(hp.lr) + 3,
        "x2": hp.warmup_ratio,
        "noise": float("nan"),
        "dataset": str(candidate.dataset.path),
    }


def make_client(model_dir: Path, featurize=fake_features, **settings) -> TestClient:
    predictor, card = load_predictor(model_dir)
    config = ServeConfig(model_dir=model_dir, **settings)
    return TestClient(create_fastapi_app(ModelBackend(predictor, card, featurize), config))


@pytest.fixture
def client(model_dir, data_root, monkeypatch) -> TestClient:
    monkeypatch.setenv("TUNEAHEAD_TEST_TOKEN", TOKEN)
    return make_client(model_dir, token_env="TUNEAHEAD_TEST_TOKEN", data_root=data_root, max_rows=50)


def rows_of(table: pd.DataFrame) -> list[dict]:
    return [{k: (None if math.isnan(v) else v) for k, v in row.items()} for row in table[FEATURES].to_dict("records")]


def test_a_row_unlike_the_training_runs_is_flagged_novel_with_its_features(client, predictor) -> None:
    table = synthetic_metadataset(2, seed=13)
    table.loc[1, "x1"] = 25.0  # far beyond the training range of x1 (-2..2)
    body = client.post("/v1/predict", json={"rows": rows_of(table)}, headers=AUTH).json()
    usual, far = body["predictions"]
    novelty, novel, names = predictor.novelty_of(predictor.matrix(table))
    assert (usual["novel"], far["novel"]) == (False, True) and far["novel_features"] == names[1] == ["x1"]
    np.testing.assert_allclose([usual["novelty"], far["novelty"]], novelty, rtol=0, atol=1e-9)
    assert far["upper"] - far["lower"] > usual["upper"] - usual["lower"]  # widened


def test_predictions_and_intervals_equal_the_in_process_predictor(client, predictor, model_dir) -> None:
    table = synthetic_metadataset(50, seed=12)
    table.loc[::5, "x2"] = np.nan  # sent as null: missing, as in training
    response = client.post("/v1/predict", json={"rows": rows_of(table)}, headers=AUTH)
    assert response.status_code == 200
    body = response.json()
    got = pd.DataFrame(body["predictions"])
    lower, upper = predictor.predict_interval(table)
    np.testing.assert_allclose(got["prediction"], predictor.predict(table), rtol=0, atol=1e-9)
    np.testing.assert_allclose(got["lower"], lower, rtol=0, atol=1e-9)
    np.testing.assert_allclose(got["upper"], upper, rtol=0, atol=1e-9)
    card = load_predictor(model_dir)[1]
    assert body["model"] == {
        "card_sha256": card.card_sha256,
        "created": card.created,
        "target": "y",
        "level": 0.9,
    }
    assert body["batch"] == {"requests": 1, "rows": 50}


def test_a_batch_of_requests_is_predicted_as_each_alone_with_normalized_intervals() -> None:
    table = synthetic_metadataset(200, seed=14)
    config = FAST.model_copy(update={"interval_method": "cv-normalized"})
    predictor = ScorePredictor(config=config).fit(table, "y")
    assert predictor.interval.scale is not None
    parts = [table.iloc[:1], table.iloc[1:40], table.iloc[40:41]]
    results = predict_matrices(predictor, [predictor.matrix(part) for part in parts])
    for part, result in zip(parts, results, strict=True):
        lower, upper = predictor.predict_interval(part)
        np.testing.assert_allclose(result.prediction, predictor.predict(part), rtol=0, atol=1e-9)
        np.testing.assert_allclose(result.lower, lower, rtol=0, atol=1e-9)
        np.testing.assert_allclose(result.upper, upper, rtol=0, atol=1e-9)
        assert (result.batch_requests, result.batch_rows) == (3, 41)


def test_an_unbounded_interval_is_null_not_a_500(model_dir) -> None:
    predictor, card = load_predictor(model_dir)
    predictor.interval = ConformalInterval(0.9, math.inf)  # too few calibration rows for the level
    app = create_fastapi_app(ModelBackend(predictor, card), ServeConfig(model_dir=model_dir))
    response = TestClient(app).post("/v1/predict", json={"rows": [{"x1": 0.5, "x2": 0.1, "noise": 0.0}]})
    assert response.status_code == 200
    prediction = response.json()["predictions"][0]
    assert prediction["lower"] is None and prediction["upper"] is None and math.isfinite(prediction["prediction"])


def test_explanations_add_up_to_the_prediction(client, predictor) -> None:
    table = synthetic_metadataset(8, seed=13)
    table.loc[0, "noise"] = np.nan
    response = client.post("/v1/explain", json={"rows": rows_of(table), "top_k": 100}, headers=AUTH)
    assert response.status_code == 200
    explanations = response.json()["explanations"]
    np.testing.assert_allclose([e["prediction"] for e in explanations], predictor.predict(table), atol=1e-9)
    for explanation in explanations:
        contributions = [c["contribution"] for c in explanation["top"]]
        assert sorted(c["feature"] for c in explanation["top"]) == sorted(FEATURES)  # top_k capped at 3
        assert explanation["base_value"] + sum(contributions) == pytest.approx(explanation["prediction"], abs=1e-6)
        assert [abs(c) for c in contributions] == sorted(map(abs, contributions), reverse=True)
    assert next(c for c in explanations[0]["top"] if c["feature"] == "noise")["value"] is None
    short = client.post("/v1/explain", json={"rows": rows_of(table), "top_k": 1}, headers=AUTH).json()
    assert [len(e["top"]) for e in short["explanations"]] == [1] * 8


def test_the_model_route_returns_the_verified_card(client, model_dir) -> None:
    body = client.get("/v1/model", headers=AUTH).json()
    card = load_predictor(model_dir)[1]
    assert body["card"] == json.loads(card.model_dump_json())
    assert body["card"]["features"] == FEATURES and body["model"]["card_sha256"] == card.card_sha256


PROTECTED = [("GET", "/v1/model"), ("POST", "/v1/predict"), ("POST", "/v1/explain"), ("GET", "/docs")]
PROTECTED += [("GET", "/openapi.json")]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x"])
def test_every_route_but_health_needs_the_token(client, method, path, authorization) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = client.request(method, path, json={"rows": [{"x1": 1, "x2": 1, "noise": 1}]}, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"] == "unauthorized"


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_the_right_token_opens_every_route(client, method, path) -> None:
    response = client.request(method, path, json={"rows": [{"x1": 1, "x2": 1, "noise": 1}]}, headers=AUTH)
    assert response.status_code == 200


def test_health_answers_without_a_token(client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json()["status"] == "ok"


def test_health_stays_public_when_the_app_is_mounted_under_a_prefix(model_dir, monkeypatch) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    monkeypatch.setenv("TUNEAHEAD_TEST_TOKEN", TOKEN)
    predictor, card = load_predictor(model_dir)
    app = create_fastapi_app(
        ModelBackend(predictor, card), ServeConfig(model_dir=model_dir, token_env="TUNEAHEAD_TEST_TOKEN")
    )
    client = TestClient(Starlette(routes=[Mount("/api", app=app)]))
    assert client.get("/api/healthz").status_code == 200
    assert client.get("/api/v1/model").status_code == 401
    assert client.get("/api/v1/model", headers=AUTH).status_code == 200


def test_a_token_file_is_read_and_a_missing_token_refuses_to_start(model_dir, tmp_path, monkeypatch) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(f"  {TOKEN}\n")
    client = make_client(model_dir, token_file=token_file)
    assert client.get("/v1/model").status_code == 401
    assert client.get("/v1/model", headers=AUTH).status_code == 200
    monkeypatch.delenv("TUNEAHEAD_UNSET_TOKEN", raising=False)
    with pytest.raises(ValueError, match="TUNEAHEAD_UNSET_TOKEN is unset or empty"):
        make_client(model_dir, token_env="TUNEAHEAD_UNSET_TOKEN")
    token_file.write_text("\n")
    with pytest.raises(ValueError, match="is empty"):
        make_client(model_dir, token_file=token_file)
    with pytest.raises(ValidationError, match="at most one of token_env and token_file"):
        ServeConfig(model_dir=model_dir, token_env="A", token_file=token_file)


GOOD_ROW = '{"x1": 1, "x2": 1, "noise": 1}'
FINITE = "Input should be a finite number"
NUMBER = "Input should be a valid number"


def one_row(x1: str = "1", x2: str = "1", noise: str = "1") -> str:
    """A one-row body with the values written verbatim (so that NaN and Infinity literals can be sent)."""
    return f'{{"rows": [{{"x1": {x1}, "x2": {x2}, "noise": {noise}}}]}}'


BAD_BODIES = [
    ("malformed JSON", '{"rows": [', 400, "malformed_json", "not valid JSON"),
    ("top-level list", f"[{GOOD_ROW}]", 422, "invalid_request", "expected a JSON object"),
    ("top-level string", '"rows"', 422, "invalid_request", "expected a JSON object"),
    ("rows not a list", f'{{"rows": {GOOD_ROW}}}', 422, "invalid_request", "rows: Input should be a valid list"),
    ("row not an object", '{"rows": [[1, 1, 1]]}', 422, "invalid_request", "rows[0]: Input should be a valid dict"),
    ("empty rows", '{"rows": []}', 422, "invalid_request", "rows: List should have at least 1 item"),
    ("neither rows nor candidates", "{}", 422, "invalid_request", "exactly one of 'rows' and 'candidates'"),
    ("unknown top-level key", f'{{"rows": [{GOOD_ROW}], "row": 1}}', 422, "invalid_request", "row: Extra inputs"),
    (
        "missing column",
        f'{{"rows": [{GOOD_ROW}, {{"x1": 1}}]}}',
        422,
        "wrong_columns",
        "rows[1]: missing column(s) 'x2', 'noise'",
    ),
    ("unknown column", one_row(noise='1, "x3": 0'), 422, "wrong_columns", "rows[0]: unknown column(s) 'x3'"),
    ("NaN literal", one_row(x1="NaN"), 422, "invalid_request", f"rows[0].x1: {FINITE}"),
    ("Infinity literal", one_row(x2="-Infinity"), 422, "invalid_request", f"rows[0].x2: {FINITE}"),
    ("overflow to inf", one_row(x1="1e999"), 422, "invalid_request", f"rows[0].x1: {FINITE}"),
    ("string value", one_row(x1='"1.5"'), 422, "invalid_request", f"rows[0].x1: {NUMBER}"),
    ("boolean value", one_row(x1="true"), 422, "invalid_request", f"rows[0].x1: {NUMBER}"),
    ("nested value", one_row(noise="[1]"), 422, "invalid_request", "rows[0].noise: Input should be"),
    ("too many rows", '{"rows": [' + ", ".join([GOOD_ROW] * 51) + "]}", 413, "too_many_rows", "51 rows in one request"),
    ("deeply nested", "[" * 100_000 + "]" * 100_000, 400, "bad_request", "error parsing the body"),
    ("not UTF-8", b'{"rows": [\xff]}', 400, "bad_request", "error parsing the body"),
]


@pytest.mark.parametrize("path", ["/v1/predict", "/v1/explain"])
@pytest.mark.parametrize(("case", "body", "status", "error", "detail"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_bad_bodies_get_a_4xx_json_error(client, path, case, body, status, error, detail) -> None:
    headers = {**AUTH, "Content-Type": "application/json"}
    response = client.post(path, content=body.encode() if isinstance(body, str) else body, headers=headers)
    assert (response.status_code, response.json()["error"]) == (status, error), response.text
    assert detail in response.json()["detail"]


def test_exactly_max_rows_is_accepted(client) -> None:
    rows = [{"x1": 1, "x2": 1, "noise": 1}] * 50
    assert client.post("/v1/predict", json={"rows": rows}, headers=AUTH).status_code == 200


def test_a_body_that_is_not_json_typed_is_refused_with_a_hint(client) -> None:
    response = client.post(
        "/v1/predict", content=f'{{"rows": [{GOOD_ROW}]}}', headers={**AUTH, "Content-Type": "text/plain"}
    )
    assert response.status_code == 422 and "Content-Type: application/json" in response.json()["detail"]


def test_oversized_bodies_are_refused_by_length_and_by_bytes_received(model_dir) -> None:
    client = make_client(model_dir, max_body_bytes=4096)
    row = f'{{"rows": [{GOOD_ROW}], "pad": "{"x" * 5000}"}}'.encode()
    declared = client.post("/v1/predict", content=row, headers={"Content-Type": "application/json"})
    assert declared.status_code == 413 and declared.json()["error"] == "payload_too_large"
    assert "Content-Length 5" in declared.json()["detail"]
    chunked = client.post("/v1/predict", content=iter([row[:3000], row[3000:]]))  # no Content-Length
    assert chunked.status_code == 413 and "more than 4096 bytes received" in chunked.json()["detail"]
    lying = client.post("/v1/predict", content=row, headers={"Content-Length": "100"})
    assert lying.status_code == 413 and "more than 4096 bytes received" in lying.json()["detail"]
    small = client.post("/v1/predict", json={"rows": [{"x1": 1, "x2": 1, "noise": 1}]})
    assert small.status_code == 200


def test_unknown_routes_and_methods_are_json_errors(client) -> None:
    assert client.get("/v2/predict", headers=AUTH).json() == {"error": "not_found", "detail": "Not Found"}
    response = client.get("/v1/predict", headers=AUTH)
    assert response.status_code == 405 and response.json()["error"] == "method_not_allowed"


def test_a_server_fault_is_a_json_500_without_internals(model_dir) -> None:
    predictor, card = load_predictor(model_dir)

    class Failing(ModelBackend):
        async def predict(self, x):
            raise RuntimeError("/secret/path exploded")

    app = create_fastapi_app(Failing(predictor, card), ServeConfig(model_dir=model_dir))
    response = TestClient(app, raise_server_exceptions=False).post(
        "/v1/predict", json={"rows": [{"x1": 1, "x2": 1, "noise": 1}]}
    )
    assert response.status_code == 500
    assert response.json() == {"error": "internal_error", "detail": "the server failed on this request (RuntimeError)"}


def candidate(path: str, **hp) -> dict:
    return {"model": "default", "dataset": {"path": path}, "hp": hp}


def test_candidate_specs_are_featurized_then_predicted(client, predictor, data_root) -> None:
    specs = [candidate("train.jsonl", lr=1e-3, warmup_ratio=0.1), candidate(str(data_root / "train.jsonl"), lr=1e-2)]
    response = client.post("/v1/predict", json={"candidates": specs}, headers=AUTH)
    assert response.status_code == 200, response.text
    body = response.json()
    expected = [
        fake_features(Candidate.model_validate({**s, "dataset": {"path": data_root / "train.jsonl"}})) for s in specs
    ]
    table = pd.DataFrame(expected)
    np.testing.assert_allclose([p["prediction"] for p in body["predictions"]], predictor.predict(table), atol=1e-9)
    assert [p["candidate_id"] for p in body["predictions"]] == [row["candidate_id"] for row in expected]
    explained = client.post("/v1/explain", json={"candidates": specs[:1]}, headers=AUTH).json()
    assert explained["explanations"][0]["candidate_id"] == expected[0]["candidate_id"]


@pytest.mark.parametrize(
    ("path", "status", "error"),
    [
        ("../secret.jsonl", 403, "forbidden_path"),
        ("/etc/passwd", 403, "forbidden_path"),
        ("escape.jsonl", 403, "forbidden_path"),  # a symlink out of the data root
        ("sub/../../secret.jsonl", 403, "forbidden_path"),
        ("missing.jsonl", 422, "dataset_not_found"),
        (".", 422, "dataset_not_found"),
        ("a\u0000b", 422, "invalid_request"),
        ("x" * 300, 422, "invalid_dataset_path"),  # a name too long for the file system
    ],
)
def test_candidate_datasets_must_be_files_under_the_data_root(client, data_root, path, status, error) -> None:
    response = client.post(
        "/v1/predict", json={"candidates": [candidate("train.jsonl"), candidate(path)]}, headers=AUTH
    )
    assert (response.status_code, response.json()["error"]) == (status, error)
    assert "candidates[1]" in response.json()["detail"] and str(data_root) not in response.json()["detail"]


def test_candidate_spec_errors_name_the_field(client, data_root) -> None:
    def post(payload):
        response = client.post("/v1/predict", json=payload, headers=AUTH)
        return response.status_code, response.json()["error"], response.json()["detail"]

    assert post({"candidates": [candidate("train.jsonl", lr=-1)]}) == (
        422,
        "invalid_request",
        "candidates[0].hp.lr: Input should be greater than 0",
    )
    status, error, detail = post({"candidates": [candidate("train.jsonl", target_modules=["fc1"])]})
    assert (status, error) == (422, "invalid_request") and "candidates[0].hp.target_modules" in detail
    assert post({"candidates": [{**candidate("train.jsonl"), "model": "/models/other"}]})[:2] == (
        422,
        "wrong_base_model",
    )
    assert post({"candidates": [candidate("train.jsonl")] * 9})[:2] == (413, "too_many_candidates")
    (data_root / "broken.jsonl").write_text("{}\n")
    status, error, detail = post({"candidates": [candidate("broken.jsonl")]})
    assert (status, error) == (422, "bad_dataset")
    assert detail == "candidates[0].dataset: broken.jsonl, line 3: expected a JSON object"  # no server path


def test_candidate_specs_are_refused_without_a_data_root(model_dir) -> None:
    response = make_client(model_dir).post("/v1/predict", json={"candidates": [candidate("train.jsonl")]})
    assert (response.status_code, response.json()["error"]) == (403, "candidates_disabled")


def test_a_model_on_other_features_cannot_take_candidate_specs(model_dir, data_root) -> None:
    client = make_client(model_dir, featurize=lambda c: {"candidate_id": "c", "x1": 1.0}, data_root=data_root)
    response = client.post("/v1/predict", json={"candidates": [candidate("train.jsonl")]})
    assert (response.status_code, response.json()["error"]) == (422, "features_unavailable")
    assert "'x2', 'noise'" in response.json()["detail"]
