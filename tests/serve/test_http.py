"""The Serve application over real HTTP on 127.0.0.1, behind HAProxy as ``tuneahead-ray serve`` runs it: exact
predictions, auth, 4xx on bad bodies, batching of concurrent requests, candidate featurization by the
FeatureWorker, a killed replica replaced without failed requests, a tampered model refused at deploy time, and
configs/serve.yaml valid under Serve's own schema."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml

from tests._harness.ports import free_port
from tuneahead_ray.client import ClientError, TuneAheadClient
from tuneahead_ray.predictor import MODEL_FILE, PredictorConfig, ScorePredictor, save_predictor
from tuneahead_ray.serve import ServeConfig, bind_app
from tuneahead_ray.yaml_config import ConfigError

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "configs" / "serve.yaml"
TOKEN = "integration-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
APP = "tuneahead"


def corpus_like_table(n: int, seed: int) -> pd.DataFrame:
    """Every corpus feature (so candidate specs can be predicted), with a score driven by three of them."""
    from tuneahead_ray.features import CORPUS_FEATURES

    rng = np.random.default_rng(seed)
    table = pd.DataFrame({name: rng.normal(size=n) for name in CORPUS_FEATURES})
    table["score"] = 50 - 8 * table["near_duplicate_rate"] + 4 * table["hp_log10_lr"] + rng.normal(0, 0.5, n)
    return table


@dataclass
class Service:
    url: str
    predictor: ScorePredictor
    table: pd.DataFrame
    model_dir: Path


def shipped_deployment_options() -> dict[str, dict]:
    """configs/serve.yaml's deployment options, pinned to 2 ScoreService replicas and fast health checks."""
    app = yaml.safe_load(SHIPPED.read_text())["applications"][0]
    options = {d.pop("name"): d for d in app["deployments"]}
    options["ScoreService"]["autoscaling_config"].update(min_replicas=2, initial_replicas=2, max_replicas=2)
    options["ScoreService"]["health_check_period_s"] = 1
    options["FeatureWorker"]["autoscaling_config"].update(max_replicas=1)
    return options


@pytest.fixture(scope="module")
def service(ray_session, tmp_path_factory):
    from ray import serve

    directory = tmp_path_factory.mktemp("serve_http")
    table = corpus_like_table(300, seed=0)
    config = PredictorConfig(learning_rate=0.1, max_rounds=300, early_stopping_rounds=30, n_jobs=1)
    predictor = ScorePredictor(config=config).fit(table, "score")
    save_predictor(predictor, directory / "model")
    (directory / "token").write_text(TOKEN + "\n")
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    settings = ServeConfig(
        model_dir=directory / "model",
        token_file=directory / "token",
        data_root=REPO / "configs" / "data",
        max_rows=200,
    )
    serve.run(bind_app(settings, shipped_deployment_options()), name=APP, route_prefix="/")
    try:
        yield Service(f"http://127.0.0.1:{port}", predictor, table, directory / "model")
    finally:
        serve.shutdown()


def rows_of(table: pd.DataFrame, features: list[str]) -> list[dict]:
    return table[features].to_dict("records")


def test_predictions_over_http_equal_the_in_process_predictor(service) -> None:
    rows = corpus_like_table(40, seed=1)
    rows.loc[::4, "hp_max_grad_norm"] = np.nan  # the client sends NaN as null: missing
    with TuneAheadClient(service.url, token=TOKEN) as client:
        body = client.predict(rows_of(rows, service.predictor.features))
        card = client.model_card()
        assert client.health()["status"] == "ok"
    lower, upper = service.predictor.predict_interval(rows)
    got = pd.DataFrame(body["predictions"])
    np.testing.assert_allclose(got["prediction"], service.predictor.predict(rows), rtol=0, atol=1e-9)
    np.testing.assert_allclose(got["lower"], lower, rtol=0, atol=1e-9)
    np.testing.assert_allclose(got["upper"], upper, rtol=0, atol=1e-9)
    assert body["model"] == card["model"] and card["card"]["features"] == service.predictor.features
    assert len(body["model"]["card_sha256"]) == 64 and body["model"]["created"]


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/v1/model"), ("POST", "/v1/predict"), ("POST", "/v1/explain"), ("GET", "/docs")]
)
def test_routes_need_the_token_but_health_does_not(service, method, path) -> None:
    assert httpx.request(method, service.url + path, json={"rows": [{}]}).status_code == 401
    wrong = httpx.request(method, service.url + path, headers={"Authorization": "Bearer nope"})
    assert (wrong.status_code, wrong.json()["error"]) == (401, "unauthorized")
    assert httpx.get(service.url + "/healthz").status_code == 200
    with pytest.raises(ClientError) as caught, TuneAheadClient(service.url, token="nope") as client:
        client.model_card()
    assert (caught.value.status, caught.value.error) == (401, "unauthorized")


def row_json(features: list[str], first_value: str = "0.5") -> str:
    """One row as JSON text, its first feature written as ``first_value`` verbatim (e.g. the literal NaN)."""
    values = [f'"{features[0]}": {first_value}'] + [f'"{name}": 0.5' for name in features[1:]]
    return "{" + ", ".join(values) + "}"


def rows_body(*rows: str) -> str:
    return '{"rows": [' + ", ".join(rows) + "]}"


def bad_bodies(features: list[str]) -> list[tuple[str, str, int, str]]:
    good = row_json(features)
    return [
        ("malformed JSON", '{"rows": [{"a": 1', 400, "malformed_json"),
        ("top-level list", f"[{good}]", 422, "invalid_request"),
        ("missing column", rows_body(f'{{"{features[0]}": 1}}'), 422, "wrong_columns"),
        ("unknown column", rows_body(good[:-1] + ', "extra": 1}'), 422, "wrong_columns"),
        ("NaN", rows_body(row_json(features, "NaN")), 422, "invalid_request"),
        ("Infinity", rows_body(row_json(features, "-Infinity")), 422, "invalid_request"),
        ("string value", rows_body(row_json(features, '"0.5"')), 422, "invalid_request"),
        ("empty rows", rows_body(), 422, "invalid_request"),
        ("too many rows", rows_body(*[good] * 201), 413, "too_many_rows"),
        ("oversized body", rows_body(good, '"' + "x" * (1 << 20) + '"'), 413, "payload_too_large"),
    ]


def test_bad_bodies_get_4xx_json_errors_through_serve(service) -> None:
    for case, body, status, error in bad_bodies(service.predictor.features):
        for path in ("/v1/predict", "/v1/explain"):
            headers = {**AUTH, "Content-Type": "application/json"}
            response = httpx.post(service.url + path, content=body.encode(), headers=headers, timeout=30)
            assert (response.status_code, response.json()["error"]) == (status, error), (case, path, response.text)


def test_concurrent_single_row_requests_are_predicted_together(service) -> None:
    features = service.predictor.features
    rows = rows_of(corpus_like_table(96, seed=2), features)

    async def fire() -> list[dict]:
        limits = httpx.Limits(max_connections=32)
        async with httpx.AsyncClient(base_url=service.url, headers=AUTH, limits=limits, timeout=30) as client:
            responses = await asyncio.gather(*(client.post("/v1/predict", json={"rows": [row]}) for row in rows))
        assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200]
        return [r.json() for r in responses]

    bodies = asyncio.run(fire())
    expected = service.predictor.predict(pd.DataFrame(rows))
    got = [body["predictions"][0]["prediction"] for body in bodies]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)  # batching does not mix rows up
    sizes = [body["batch"]["requests"] for body in bodies]
    assert max(sizes) > 1, sizes
    assert all(body["batch"]["rows"] == body["batch"]["requests"] for body in bodies)  # one row per request


def test_large_requests_are_a_batch_of_their_own_and_small_ones_still_share(service) -> None:
    """A request of at least max_batch_size (32) rows skips the batch queue; concurrent small ones still batch."""
    features = service.predictor.features
    big = [rows_of(corpus_like_table(40, seed=10 + i), features) for i in range(4)]
    small = rows_of(corpus_like_table(64, seed=20), features)

    async def fire() -> list[dict]:
        limits = httpx.Limits(max_connections=80)
        async with httpx.AsyncClient(base_url=service.url, headers=AUTH, limits=limits, timeout=30) as client:
            bodies = [{"rows": rows} for rows in big] + [{"rows": [row]} for row in small]
            responses = await asyncio.gather(*(client.post("/v1/predict", json=body) for body in bodies))
        assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200]
        return [r.json() for r in responses]

    bodies = asyncio.run(fire())
    for rows, body in zip(big, bodies, strict=False):
        assert body["batch"] == {"requests": 1, "rows": 40}
        got = [p["prediction"] for p in body["predictions"]]
        np.testing.assert_allclose(got, service.predictor.predict(pd.DataFrame(rows)), rtol=0, atol=1e-9)
    assert max(body["batch"]["requests"] for body in bodies[4:]) > 1  # the small ones were batched together
    assert all(body["batch"]["rows"] == body["batch"]["requests"] for body in bodies[4:])  # never with a big one


def test_requests_reach_the_replicas_through_haproxy_which_listens_on_loopback_only(service) -> None:
    """The session's Ray has the service's environment: HAProxy answers on the HTTP port, not the Python proxy,
    and its stats page and exporter listen on 127.0.0.1 (Ray would open them on every interface); its admin
    socket is owner-only, in a directory only this user can enter."""
    import psutil  # Ray ships it

    if os.environ.get("RAY_SERVE_ENABLE_HA_PROXY") != "1":  # the session's Ray environment (conftest)
        pytest.skip("run with Serve's Python proxy (TUNEAHEAD_TEST_HAPROXY=0)")
    haproxies = [p for p in psutil.Process().children(recursive=True) if p.name() == "haproxy"]
    listening = [c.laddr for p in haproxies for c in p.net_connections("tcp") if c.status == psutil.CONN_LISTEN]
    port = int(service.url.rsplit(":", 1)[1])
    assert port in {address.port for address in listening}, (port, listening)
    assert len(listening) >= 3 and {address.ip for address in listening} == {"127.0.0.1"}, listening
    private = Path(os.environ["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"])
    assert private.stat().st_mode & 0o777 == 0o700
    (socket_file,) = private.glob("*/admin.sock")
    assert socket_file.stat().st_mode & 0o777 == 0o600


def test_candidate_specs_are_featurized_by_the_feature_worker(service) -> None:
    spec = {"model": "default", "dataset": {"path": "small_clean.jsonl"}, "hp": {"max_steps": 40, "batch_size": 8}}
    with TuneAheadClient(service.url, token=TOKEN, timeout=300) as client:
        predicted = client.predict_candidates([spec])["predictions"][0]
        with pytest.raises(ClientError) as caught:
            client.predict_candidates([{**spec, "dataset": {"path": "../../pyproject.toml"}}])
        with pytest.raises(ClientError) as bad:  # the worker's DatasetError crosses the deployment handle
            client.predict_candidates([{**spec, "dataset": {"path": "small_clean.jsonl", "format": "instruction"}}])
    assert (caught.value.status, caught.value.error) == (403, "forbidden_path")
    assert (bad.value.status, bad.value.error) == (422, "bad_dataset")
    assert bad.value.detail == "candidates[0].dataset: small_clean.jsonl, line 1: missing field 'instruction'"
    explained = httpx.post(
        service.url + "/v1/explain", json={"candidates": [spec], "top_k": 1000}, headers=AUTH, timeout=300
    ).json()["explanations"][0]
    features = {c["feature"]: c["value"] for c in explained["top"]}
    assert sorted(features) == sorted(service.predictor.features)
    row = pd.DataFrame([{name: np.nan if value is None else value for name, value in features.items()}])
    assert explained["prediction"] == pytest.approx(service.predictor.predict(row)[0], abs=1e-9)
    assert predicted["candidate_id"] == explained["candidate_id"]
    assert predicted["prediction"] == pytest.approx(explained["prediction"], abs=1e-9)  # a deterministic probe


def test_the_shipped_config_validates_and_names_the_deployed_deployments(service) -> None:
    from ray import serve
    from ray.serve.config import AutoscalingConfig
    from ray.serve.schema import ServeDeploySchema

    config = ServeDeploySchema.model_validate(yaml.safe_load(SHIPPED.read_text()))
    (app,) = config.applications
    assert app.import_path == "tuneahead_ray.serve:build_app"
    assert (config.http_options.host, config.http_options.port) == ("127.0.0.1", 8000)
    ServeConfig.model_validate(app.args)
    for deployment in app.deployments:
        AutoscalingConfig.model_validate(deployment.autoscaling_config)
    assert {d.name for d in app.deployments} == set(serve.status().applications[APP].deployments)


def score_replicas() -> set[str]:
    import ray

    return {
        actor["name"]
        for actor in ray.util.list_named_actors(all_namespaces=True)
        if actor["namespace"] == "serve" and f"{APP}#ScoreService#" in actor["name"]
    }


def post_with_retries(url: str, row: dict, attempts: int = 5) -> tuple[httpx.Response, int]:
    """A prediction request retried (0.5 s apart) on a 5xx or a dropped connection; returns it and the retries."""
    for attempt in range(attempts):
        try:
            response = httpx.post(url + "/v1/predict", json={"rows": [row]}, headers=AUTH, timeout=10)
            if response.status_code < 500:
                return response, attempt
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"no answer after {attempts} attempts")


def test_a_killed_replica_is_replaced_while_requests_keep_succeeding(service) -> None:
    import ray
    from ray import serve

    before = score_replicas()
    assert len(before) == 2, before
    victim = sorted(before)[0]
    ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
    rows = rows_of(corpus_like_table(400, seed=3), service.predictor.features)
    expected = service.predictor.predict(pd.DataFrame(rows))
    deadline, retries = time.monotonic() + 120, 0
    for row, prediction in zip(rows, expected, strict=True):
        response, attempts = post_with_retries(service.url, row)
        retries += attempts
        assert response.status_code == 200, response.text
        assert response.json()["predictions"][0]["prediction"] == pytest.approx(prediction, abs=1e-9)
        replicas = score_replicas()
        if victim not in replicas and len(replicas) == 2:
            break
        assert time.monotonic() < deadline, f"no replacement replica after 120 s: {replicas}"
        time.sleep(0.1)
    else:
        raise AssertionError("the killed replica was not replaced within 400 requests")
    assert len(replicas - before) == 1  # a new replica, not a restarted name
    assert retries <= 10, retries
    deployment = serve.status().applications[APP].deployments["ScoreService"]
    deadline = time.monotonic() + 60
    while deployment.replica_states.get("RUNNING") != 2 and time.monotonic() < deadline:
        time.sleep(0.5)
        deployment = serve.status().applications[APP].deployments["ScoreService"]
    assert deployment.replica_states.get("RUNNING") == 2, deployment.replica_states
    for row in rows[:20]:
        assert post_with_retries(service.url, row, attempts=1)[0].status_code == 200


def test_a_tampered_model_fails_the_deployment_with_a_clear_error(service, tmp_path) -> None:
    import shutil

    from ray import serve

    from tuneahead_ray.serve.cli import deploy

    tampered = tmp_path / "tampered"
    shutil.copytree(service.model_dir, tampered)
    text = (tampered / MODEL_FILE).read_text()
    (tampered / MODEL_FILE).write_text(text.replace("leaf_value=", "leaf_value=1", 1))
    overrides = {"ScoreService": {"max_constructor_retry_count": 1, "ray_actor_options": {"num_cpus": 0}}}
    with pytest.raises(ConfigError) as caught:
        deploy(bind_app(ServeConfig(model_dir=tampered), overrides), "tampered", "/tampered")
    first, cause = str(caught.value).splitlines()
    assert first.startswith("Deploying application tampered failed")
    assert cause.startswith("  ScoreService: ") and cause.endswith(
        f"ModelStoreError: {tampered / MODEL_FILE}: sha256 differs from the card's: the file was modified"
    )
    serve.delete("tampered")
