"""The one train-to-end path: continue a run's trainer to the end of its schedule and score the result on the
run's benchmark (the base-model worker, :class:`tuneahead_ray.probe.RunWorker`, drives it for every command).

The benchmark is given, never chosen here: anything with ``score(model, tokenizer) -> BenchmarkScore``
(:mod:`tuneahead_ray.evaluation` builds them from a ``benchmark:`` block).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from tuneahead_ray.training._evaluate import exact_match_by_group
from tuneahead_ray.training._trainer import StepRecord, StepTrainer

__all__ = ["Benchmark", "BenchmarkScore", "FinishedRun", "finish_run", "train_to_end"]


@dataclass(frozen=True)
class BenchmarkScore:
    """A model's score on a benchmark in percentage points, with the breakdown by group (family, subject)."""

    score: float
    breakdown: dict[str, float]
    items: int

    @classmethod
    def of(cls, correct: np.ndarray, groups: Sequence[str]) -> BenchmarkScore:
        """Accuracy of per-item ``correct`` flags, overall and per group, in percentage points."""
        return cls(100.0 * float(np.mean(correct)), exact_match_by_group(correct, groups), len(correct))


class Benchmark(Protocol):
    """What scores a run: the testbed benchmark, exact match on a file, multiple choice..."""

    def score(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> BenchmarkScore: ...


@dataclass
class FinishedRun:
    """A run trained to the end of its schedule (or to its first non-finite step) and scored."""

    score: BenchmarkScore
    losses: list[float]
    diverged: bool
    train_seconds: float
    eval_seconds: float
    tokens: int = 0


def train_to_end(
    trainer: StepTrainer, losses: list[float], on_step: Callable[[StepRecord], None] | None = None
) -> list[StepRecord]:
    """Step ``trainer`` to the end of its schedule, appending each loss to ``losses``; stop at the first
    non-finite step (a resumed or probed run continues where it is). Returns the steps taken here."""
    records: list[StepRecord] = []
    while trainer.steps_done < trainer.total_steps:
        record = trainer.step()
        records.append(record)
        losses.append(record.loss)
        if on_step is not None:
            on_step(record)
        if not record.finite:
            break
    return records


def finish_run(
    trainer: StepTrainer,
    tokenizer: PreTrainedTokenizerBase,
    benchmark: Benchmark,
    losses: list[float] | None = None,
    diverged: bool = False,
    on_step: Callable[[StepRecord], None] | None = None,
) -> FinishedRun:
    """Train ``trainer`` to the end and score its model on ``benchmark``. ``losses`` are those of the steps
    already taken (a probe's, a resumed run's) and ``diverged`` whether the last of them was not finite (then
    the run is not trained further).

    A run whose loss turns NaN/inf stops there and is scored as it stands: divergence is an outcome.
    """
    losses = list(losses or [])
    started = time.perf_counter()
    records = [] if diverged else train_to_end(trainer, losses, on_step)
    diverged = diverged or any(not record.finite for record in records)
    train_seconds = time.perf_counter() - started
    started = time.perf_counter()
    score = benchmark.score(trainer.model, tokenizer)
    return FinishedRun(
        score=score,
        losses=losses,
        diverged=diverged,
        train_seconds=train_seconds,
        eval_seconds=time.perf_counter() - started,
        tokens=sum(record.tokens for record in records),
    )
