"""Sampling corpus runs: deterministic, every run long enough for a <= 5% probe, lengths spread."""

from __future__ import annotations

import numpy as np
import pytest

from tuneahead_ray.corpus import sample_corpus_specs
from tuneahead_ray.corpus._sampling import MAX_RUN_STEPS, MIN_RUN_STEPS
from tuneahead_ray.probe import ProbeSpec


def test_every_run_is_long_enough_for_a_probe_of_at_most_5_percent() -> None:
    specs = sample_corpus_specs(300)
    assert specs == sample_corpus_specs(300)  # deterministic
    steps = np.array([spec.hp.total_steps(spec.data.size) for spec in specs])
    assert steps.min() >= MIN_RUN_STEPS == 400 and steps.max() <= MAX_RUN_STEPS
    probe = ProbeSpec()
    assert probe.min_steps / steps.min() <= 0.05  # the 20-step minimum probe
    # K is 5% of the run rounded to whole steps: at most half a step over 5%.
    assert max(probe.steps_for(int(s)) / s for s in steps) <= 0.05 + 0.5 / MIN_RUN_STEPS
    # Lengths keep a realistic spread (data size x epochs / batch), not a single value.
    assert np.percentile(steps, 90) > 1.5 * np.percentile(steps, 10)
    assert len({spec.run_id() for spec in specs}) == len(specs)


def test_run_length_bounds_are_checked() -> None:
    with pytest.raises(ValueError, match="min_steps"):
        sample_corpus_specs(3, min_steps=500, max_steps=400)
    short = sample_corpus_specs(20, min_steps=10, max_steps=60)
    assert all(10 <= spec.hp.total_steps(spec.data.size) <= 60 for spec in short)
