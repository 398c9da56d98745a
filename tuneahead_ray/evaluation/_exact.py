"""Exact-match benchmarks: the testbed's (teacher-forced, token for token) and any file of prompt/answer items
(greedy decoding, answers compared after normalisation)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from tuneahead_ray.data import DatasetError, load_dataset
from tuneahead_ray.evaluation._spec import ExactMatchSpec
from tuneahead_ray.testbed import ITEMS_PER_CELL, benchmark_items
from tuneahead_ray.training import BenchmarkScore, eval_mode, exact_match

__all__ = ["GreedyExactMatch", "TeacherForcedExactMatch", "normalise_answer", "testbed_benchmark"]

_SPACE = re.compile(r"\s+")


def normalise_answer(text: str) -> str:
    """What exact match compares: surrounding whitespace stripped, case folded, runs of whitespace made one space."""
    return _SPACE.sub(" ", text.strip()).casefold()


@dataclass(frozen=True)
class TeacherForcedExactMatch:
    """Items whose answer must be reproduced token for token: greedy decoding's result, computed in one
    teacher-forced forward pass (the arg-max at every answer position and at the end of the turn)."""

    prompts: tuple[str, ...]
    answers: tuple[str, ...]
    groups: tuple[str, ...]

    def score(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> BenchmarkScore:
        return BenchmarkScore.of(exact_match(model, tokenizer, self.prompts, self.answers), self.groups)


@lru_cache(maxsize=4)
def testbed_benchmark(items_per_cell: int = ITEMS_PER_CELL) -> TeacherForcedExactMatch:
    """The embedded fixed benchmark (``items_per_cell`` items per family and level), grouped by task family."""
    items = benchmark_items(items_per_cell)
    return TeacherForcedExactMatch(
        tuple(i.prompt for i in items), tuple(i.answer for i in items), tuple(i.family for i in items)
    )


@dataclass(frozen=True)
class GreedyExactMatch:
    """Items from a file: the model answers each prompt (in its chat template) by greedy decoding, and an answer
    is correct when it equals the reference after :func:`normalise_answer`."""

    prompts: tuple[str, ...]
    answers: tuple[str, ...]
    groups: tuple[str, ...]
    max_new_tokens: int | None = None
    batch_size: int = 32

    @classmethod
    def from_spec(cls, spec: ExactMatchSpec) -> GreedyExactMatch:
        table = load_dataset(spec.path, group_field=spec.group_field)
        groups = [group or "all" for group in table.column("group").to_pylist()]
        answers = table.column("response").to_pylist()
        empty = [index for index, answer in enumerate(answers) if not normalise_answer(answer)]
        if empty:
            raise DatasetError(spec.path, "answer is empty after normalisation", record=empty[0])
        return cls(
            tuple(table.column("prompt").to_pylist()), tuple(answers), tuple(groups), spec.max_new_tokens,
            spec.batch_size,
        )  # fmt: skip

    def score(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> BenchmarkScore:
        generated = greedy_answers(model, tokenizer, self.prompts, self._budget(tokenizer), self.batch_size)
        correct = np.array(
            [normalise_answer(out) == normalise_answer(ref) for out, ref in zip(generated, self.answers, strict=True)]
        )
        return BenchmarkScore.of(correct, self.groups)

    def _budget(self, tokenizer: PreTrainedTokenizerBase) -> int:
        if self.max_new_tokens is not None:
            return self.max_new_tokens
        longest = max(len(ids) for ids in tokenizer(list(self.answers), add_special_tokens=False)["input_ids"])
        return longest + 8


@torch.no_grad()
def greedy_answers(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    max_new_tokens: int,
    batch_size: int = 32,
) -> list[str]:
    """The model's greedy answer to each prompt in its chat template, up to its end-of-turn token, in batches
    (left-padded, so every row's answer starts at the same position)."""
    heads = [
        tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        for p in prompts
    ]
    encoded = tokenizer(heads, add_special_tokens=False)["input_ids"]
    device = next(model.parameters()).device
    eos = tokenizer.convert_tokens_to_ids(tokenizer.eos_token) if tokenizer.eos_token else None
    answers: list[str] = []
    with eval_mode(model):
        for start in range(0, len(encoded), batch_size):
            rows = encoded[start : start + batch_size]
            width = max(len(ids) for ids in rows)
            input_ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
            attention = torch.zeros((len(rows), width), dtype=torch.long)
            for row, ids in enumerate(rows):
                input_ids[row, width - len(ids) :] = torch.tensor(ids)
                attention[row, width - len(ids) :] = 1
            output = model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention.to(device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                num_beams=1,
                eos_token_id=eos,
                pad_token_id=tokenizer.pad_token_id,
            )
            for ids in output[:, width:].tolist():
                if eos is not None and eos in ids:
                    ids = ids[: ids.index(eos)]
                answers.append(tokenizer.decode(ids, skip_special_tokens=True))
    return answers
