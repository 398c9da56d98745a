"""One full fine-tuning run of a candidate: load, score the base, train a LoRA adapter, score the result."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from tuneahead_ray.data import load_dataset
from tuneahead_ray.modeling import load_model, load_tokenizer, resolve_device, resolve_model_dir
from tuneahead_ray.schemas import Candidate, RunResult
from tuneahead_ray.testbed import benchmark_items
from tuneahead_ray.training._encode import encode_pairs
from tuneahead_ray.training._evaluate import exact_match, exact_match_by_group
from tuneahead_ray.training._trainer import StepRecord, StepTrainer, attach_adapter, detach_adapter

__all__ = ["Benchmark", "testbed_benchmark", "score_model", "full_run"]


@dataclass(frozen=True)
class Benchmark:
    """Evaluation items: prompts, reference answers, and a group label per item for the breakdown."""

    prompts: tuple[str, ...]
    answers: tuple[str, ...]
    groups: tuple[str, ...]


@lru_cache(maxsize=1)
def testbed_benchmark() -> Benchmark:
    """The embedded fixed benchmark, grouped by task family."""
    items = benchmark_items()
    return Benchmark(tuple(i.prompt for i in items), tuple(i.answer for i in items), tuple(i.family for i in items))


def score_model(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, benchmark: Benchmark
) -> tuple[float, dict[str, float]]:
    """Exact-match accuracy in pp, overall and per group."""
    correct = exact_match(model, tokenizer, benchmark.prompts, benchmark.answers)
    return 100.0 * float(correct.mean()), exact_match_by_group(correct, benchmark.groups)


def _train(trainer: StepTrainer, on_step: Callable[[StepRecord], None] | None) -> tuple[list[StepRecord], bool]:
    records: list[StepRecord] = []
    for _ in range(trainer.total_steps):
        record = trainer.step()
        records.append(record)
        if on_step is not None:
            on_step(record)
        if not record.finite:
            return records, True
    return records, False


def train_to_end(trainer: StepTrainer, losses: list[float]) -> bool:
    """Step ``trainer`` to the end of its schedule, appending each loss to ``losses``; stop at the first
    non-finite step. Returns whether the run stayed finite (a resumed or probed run continues where it is)."""
    while trainer.steps_done < trainer.total_steps:
        record = trainer.step()
        losses.append(record.loss)
        if not record.finite:
            return False
    return True


def full_run(
    candidate: Candidate,
    device: str = "auto",
    benchmark: Benchmark | None = None,
    on_step: Callable[[StepRecord], None] | None = None,
) -> RunResult:
    """Fine-tune the candidate's adapter for its full schedule and score it on the benchmark.

    A run whose loss turns NaN/inf stops there and is scored as it stands: divergence is an outcome.
    """
    started = time.perf_counter()
    benchmark = benchmark or testbed_benchmark()
    target = resolve_device(device)
    model_dir = resolve_model_dir(candidate.model)
    tokenizer = load_tokenizer(model_dir)
    model = load_model(model_dir, target)
    table = load_dataset(candidate.dataset)
    hp = candidate.hp
    pairs = encode_pairs(
        tokenizer, table.column("prompt").to_pylist(), table.column("response").to_pylist(), hp.max_seq_len
    )
    eval_started = time.perf_counter()
    base_score, _ = score_model(model, tokenizer, benchmark)
    eval_seconds = time.perf_counter() - eval_started

    adapted = attach_adapter(model, hp)
    trainer = StepTrainer(adapted, pairs, hp, hp.total_steps(len(pairs)), tokenizer.pad_token_id)
    train_started = time.perf_counter()
    records, diverged = _train(trainer, on_step)
    train_seconds = time.perf_counter() - train_started

    eval_started = time.perf_counter()
    score, per_family = score_model(adapted, tokenizer, benchmark)
    eval_seconds += time.perf_counter() - eval_started
    detach_adapter(adapted)
    return RunResult(
        candidate_id=candidate.candidate_id(candidate.dataset.fingerprint()),
        model=candidate.model,
        dataset=str(candidate.dataset.path),
        hp=hp,
        score=score,
        base_score=base_score,
        loss_curve=[r.loss for r in records],
        steps=len(records),
        num_examples=len(pairs),
        tokens_processed=sum(r.tokens for r in records),
        train_seconds=train_seconds,
        eval_seconds=eval_seconds,
        wall_seconds=time.perf_counter() - started,
        diverged=diverged,
        device=str(target),
        per_family=per_family,
    )
