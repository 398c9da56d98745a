"""Shared fixtures: one CPU thread (tests are sized for 2 cores and must be reproducible), the embedded model, and
one real local Ray for the whole test session (integration tests); ``gpu`` tests skipped where torch sees no CUDA."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)


@pytest.hookimpl(tryfirst=True)  # before -m selects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test on the session's Ray (``ray_session``) is ``integration`` and ``slow``, whether or not its module
    says so; the tests marked ``gpu`` are skipped where torch sees no CUDA device (said so, rather than failed)."""
    no_cuda = not torch.cuda.is_available()
    skip = pytest.mark.skip(reason="gpu: needs a CUDA device (torch.cuda.is_available() is False)")
    for item in items:
        if "ray_session" in getattr(item, "fixturenames", ()):
            for name in ("integration", "slow"):
                if item.get_closest_marker(name) is None:
                    item.add_marker(name)
        if no_cuda and item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tokenizer():
    """The embedded tiny Qwen2's tokenizer (read-only: tests must not change it)."""
    from tuneahead_ray.base_models import load_tokenizer

    return load_tokenizer("default")


@pytest.fixture(scope="session")
def base_model():
    """The embedded tiny Qwen2 on the CPU (read-only: tests that train load their own copy)."""
    from tuneahead_ray.base_models import load_model

    return load_model("default", "cpu")


#: Tests run what `tuneahead-ray serve` runs: HAProxy behind the guard (TUNEAHEAD_TEST_HAPROXY=0: the Python proxy).
HAPROXY = os.environ.get("TUNEAHEAD_TEST_HAPROXY", "1") != "0"


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """A local Ray with 2 CPUs and 2 (fake) GPUs, started once per session and shut down at its end, in the
    environment ``tuneahead-ray serve`` gives its Ray (HAProxy unless TUNEAHEAD_TEST_HAPROXY=0).

    Declaring GPUs on a CPU machine exercises the GPU scheduling path: probe actors request ``num_gpus=1`` and
    fall back to the CPU device because torch sees no CUDA.
    """
    import ray

    from tuneahead_ray.serve import apply_serve_environment

    with pytest.MonkeyPatch.context() as patch:
        for name, value in apply_serve_environment(dict(os.environ), haproxy=HAPROXY).items():  # undone at the end
            patch.setenv(name, value)
        ray.init(address="local", num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False)
        try:
            yield
        finally:
            ray.shutdown()


@pytest.fixture(scope="session")
def predictor_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One temporary ``TUNEAHEAD_CACHE`` from first use to the end of the session: each default predictor is trained
    once (~30 s) and shared by every test and subprocess that screens with it; the user's cache is never touched."""
    path = tmp_path_factory.mktemp("tuneahead_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TUNEAHEAD_CACHE", str(path))
        yield path
