"""The generic actor pool's watchdog: a job whose answer never comes is resubmitted on a replacement actor."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tuneahead_ray.workers import PoolConfig, WorkerPool

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
        started = time.monotonic()
        results = dict(pool.map_unordered("work", [(key, (key,)) for key in ("a", "hang", "b")]))
    finally:
        pool.shutdown()
    assert results == {"a": "A", "hang": "HANG", "b": "B"}
    assert pool.replaced == 1 and time.monotonic() - started < 120
