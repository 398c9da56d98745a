"""Hyperparameter features, and the learning rate a schedule spends over a run."""

from __future__ import annotations

import math

import pytest

from tuneahead_ray.features import HP_FEATURES, hp_features, lr_integral
from tuneahead_ray.schemas import HyperParams


def test_lr_integral_of_a_constant_schedule_is_lr_times_steps() -> None:
    assert lr_integral(HyperParams(lr=1e-3, lr_schedule="constant"), 100) == pytest.approx(0.1)


def test_lr_integral_of_a_linear_decay_is_about_half_and_warmup_lowers_it() -> None:
    plain = lr_integral(HyperParams(lr=1e-3, lr_schedule="linear", warmup_ratio=0.0), 100)
    assert plain == pytest.approx(1e-3 * 50.5)  # sum of (100 - s) / 100 over s = 0..99
    warm = lr_integral(HyperParams(lr=1e-3, lr_schedule="linear", warmup_ratio=0.1), 100)
    assert warm < plain


def test_lr_integral_tells_constant_from_decaying_schedules_of_the_same_lr_and_length() -> None:
    values = {
        schedule: lr_integral(HyperParams(lr=2e-3, lr_schedule=schedule, warmup_ratio=0.1), 300)
        for schedule in ("linear", "cosine", "constant", "constant_with_warmup")
    }
    assert values["constant"] == pytest.approx(2e-3 * 300)  # no warmup in the plain constant schedule
    assert values["constant"] > values["constant_with_warmup"] > 1.5 * values["linear"]
    assert values["cosine"] == pytest.approx(values["linear"], rel=0.02)  # both decay to zero symmetrically


def test_hp_features_cover_hp_features_names_and_log_the_integral() -> None:
    hp = HyperParams(lr=1e-3, lr_schedule="constant", batch_size=10, epochs=2.0)
    features = hp_features(hp, 50)
    assert tuple(features) == HP_FEATURES
    assert features["hp_total_steps"] == 10
    assert features["hp_log10_lr_integral"] == pytest.approx(math.log10(1e-3 * 10))
