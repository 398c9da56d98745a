"""A small soak of the Serve app over real HTTP on 127.0.0.1 (the soak of ``benchmarks/serve_soak.py``, from
``tests/_harness/soak.py``, at a few hundred requests): valid, invalid and oversized requests with a ScoreService
replica killed midway. Every valid request is answered with exactly the in-process predictions, every invalid one
with its 4xx, no 5xx but the killed replica's in-flight requests, the replica is replaced and the Serve processes'
memory stays flat."""

from __future__ import annotations

import pytest

from tests._harness import soak
from tests._harness.ports import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def soak_run(ray_session, tmp_path_factory):
    from ray import serve

    directory = tmp_path_factory.mktemp("serve_soak")
    table, features, _ = soak.training_table()
    predictor = soak.train_model(table, features, directory / "model")
    (directory / "token").write_text(soak.TOKEN + "\n")
    requests = soak.request_mix(table, features, predictor, 450, seed=1)
    url = soak.deploy(directory / "model", directory / "token", free_port())
    try:
        yield soak.soak(url, requests[:50], requests[50:], concurrency=8)
    finally:
        serve.shutdown()


def test_valid_requests_are_answered_exactly_and_invalid_ones_with_their_4xx(soak_run) -> None:
    checks = soak_run["checks"]
    failed = {kind: counts for kind, counts in soak_run["by_kind"].items() if counts["correct"] != counts["requests"]}
    assert not failed, failed
    assert checks["every valid request answered 200 with the in-process predictions"]
    assert checks["every invalid request answered its 4xx with a JSON error"]
    assert soak_run["valid_requests"] > 200 and soak_run["invalid_requests"] > 100
    assert {"oversized body", "too many rows", "no token", "malformed JSON"} <= set(soak_run["by_kind"])


def test_5xx_only_at_the_kill_and_the_replica_is_replaced(soak_run) -> None:
    assert soak_run["kill"]["victim"] is not None
    assert soak_run["kill"]["victim"] not in soak_run["replicas_after"]
    assert soak_run["server_errors"] == soak_run["server_errors_at_kill"] <= 8, (
        soak_run["server_error_kinds"],
        soak_run["server_error_delays_after_kill_s"],
    )
    assert all(soak_run["checks"].values()), soak_run["checks"]


def test_serve_memory_stays_flat(soak_run) -> None:
    assert len(soak_run["memory"]) >= 3  # proxy, controller and the surviving replica
    for pid, memory in soak_run["memory"].items():
        assert memory["growth_mib"] <= 48 + 0.25 * memory["rss_before_mib"], (pid, memory)
