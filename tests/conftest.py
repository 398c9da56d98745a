"""Shared fixtures: one CPU thread (tests are sized for 2 cores and must be reproducible), the embedded model."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tokenizer():
    """The embedded tiny Qwen2's tokenizer (read-only: tests must not change it)."""
    from tuneahead_ray.modeling import load_tokenizer

    return load_tokenizer("default")


@pytest.fixture(scope="session")
def base_model():
    """The embedded tiny Qwen2 on the CPU (read-only: tests that train load their own copy)."""
    from tuneahead_ray.modeling import load_model

    return load_model("default", "cpu")
