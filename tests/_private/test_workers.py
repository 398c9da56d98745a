"""The generic actor pool: a job whose answer never comes is resubmitted on a replacement actor; an actor that
cannot be placed holds no jobs; actors that cannot start fail the jobs instead of hanging."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tuneahead_ray._private.workers import PoolConfig, WorkerFailure, WorkerPool

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_an_unanswered_job_is_resubmitted_after_the_timeout(ray_session, tmp_path: Path) -> None:
    # Defined here, so that Ray ships the class by value (the test module is not importable in workers).
    class HangsOnce:
        """Answers every job at once, except that the first attempt at ``hang`` never returns."""

        def __init__(self, marker: str) -> None:
            self.marker = Path(marker)

        def work(self, key: str) -> str:
            if key == "hang" and not self.marker.exists():
                self.marker.touch()
                time.sleep(3600)
            return key.upper()

    config = PoolConfig(num_workers=1, cpus_per_worker=1, use_gpus=False, max_in_flight=1, job_timeout_s=5)
    pool = WorkerPool(HangsOnce, (str(tmp_path / "hung"),), config)
    try:
        results = dict(pool.map_unordered("work", [(key, (key,)) for key in ("a", "hang", "b")]))
    finally:
        pool.shutdown()
    assert results == {"a": "A", "hang": "HANG", "b": "B"}
    # The first attempt hung (its marker is there) and the watchdog replaced its actor once, which answered.
    assert (tmp_path / "hung").exists() and pool.replaced == 1


def test_an_actor_the_cluster_cannot_place_holds_no_jobs(ray_session) -> None:
    # Three one-GPU workers on the session's 2 GPUs: the third never starts (as when a node died unnoticed, or the
    # cluster is smaller than it looked). Its share of the jobs must go to the others, not wait for the watchdog.
    class Upper:
        def work(self, key: str) -> str:
            return key.upper()

    config = PoolConfig(num_workers=3, use_gpus=True, gpus_per_worker=1, cpus_per_worker=0, job_timeout_s=30)
    pool = WorkerPool(Upper, (), config)
    try:
        results = dict(pool.map_unordered("work", [(key, (key,)) for key in "abcdef"]))
    finally:
        pool.shutdown()
    assert results == {key: key.upper() for key in "abcdef"}
    # No job waited on the unplaced actor: the watchdog (job_timeout_s) would have killed and replaced it.
    assert pool.replaced == 0


def test_actors_that_cannot_start_fail_the_jobs_with_the_reason(ray_session) -> None:
    class BrokenInit:
        def __init__(self) -> None:
            raise ValueError("model directory is missing config.json")

        def work(self, key: str) -> str:
            return key

    config = PoolConfig(num_workers=1, cpus_per_worker=0, use_gpus=False, max_retries=1)
    pool = WorkerPool(BrokenInit, (), config)
    try:
        results = dict(pool.map_unordered("work", [(key, (key,)) for key in "ab"]))
    finally:
        pool.shutdown()
    assert sorted(results) == ["a", "b"]
    assert all(isinstance(r, WorkerFailure) for r in results.values())
    assert all("no worker could start (2 tries each)" in r.error for r in results.values())
    assert all("config.json" in r.error for r in results.values())
    assert pool.replaced == 1
