"""Multiple-choice benchmarks (MMLU-style): items from the Hugging Face layout or the original MMLU CSV files,
scored by the log-likelihood the model gives each choice.

Two documented modes:

* ``choice_text`` (default): the question is the user turn of the model's chat template; each choice's text is a
  candidate assistant answer, scored by the summed log-probability of its tokens (the end-of-turn token not
  included); the most likely choice is the model's answer.
* ``letter``: the standard MMLU prompt, as evaluation harnesses use it zero-shot, without a chat template::

      The following are multiple choice questions (with answers) about {subject}.

      {question}
      A. {choice}
      B. {choice}
      ...
      Answer:

  and the model's answer is the letter (`` A``, `` B``, ...) it gives the highest log-probability next.
"""

from __future__ import annotations

import csv
import io
import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from tuneahead_ray.data import DatasetError, read_records
from tuneahead_ray.evaluation._spec import MultipleChoiceSpec
from tuneahead_ray.training import (
    BenchmarkScore,
    EncodedPairs,
    next_token_logprobs,
    score_rows,
)

__all__ = ["ChoiceItem", "MultipleChoice", "choice_loglikelihoods", "load_choice_items"]

LETTERS = string.ascii_uppercase
#: Most tokens kept of one scored sequence (the question is cut from the left when longer).
MAX_SEQ_LEN = 2048


@dataclass(frozen=True)
class ChoiceItem:
    question: str
    choices: tuple[str, ...]
    answer: int
    subject: str


# ------------------------------------------------------------------------------------------------ loading


def load_choice_items(path: Path) -> list[ChoiceItem]:
    """Items from an MMLU CSV (``.csv``: no header; question, choices..., answer letter; the subject is the file
    name without ``_test``/``_dev``/``_val``), a directory of them (MMLU's ``test/`` folder: one file per subject),
    or the Hugging Face layout (JSON/JSONL/Parquet records with ``question``, ``choices``, integer ``answer`` and
    optional ``subject``). Errors name the file and line."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.csv"))
        if not files:
            raise DatasetError(path, "a directory of multiple-choice items must hold MMLU .csv files")
        return [item for file in files for item in _csv_items(file)]
    if path.suffix.lower() == ".csv":
        return _csv_items(path)
    items = []
    for raw in read_records(path):
        try:
            items.append(_hf_item(raw.value))
        except ValueError as err:
            raise DatasetError(path, str(err), line=raw.line, record=raw.record) from None
    return items


def _hf_item(value: object) -> ChoiceItem:
    if not isinstance(value, dict):
        raise ValueError(f"expected an object with question, choices and answer, got {type(value).__name__}")
    missing = [key for key in ("question", "choices", "answer") if key not in value]
    if missing:
        raise ValueError(f"missing field(s) {missing}; expected question, choices (list), answer (index)")
    question, choices, answer = value["question"], value["choices"], value["answer"]
    if not isinstance(question, str) or not question.strip():
        raise ValueError("field 'question' must be a non-empty string")
    if not isinstance(choices, list | tuple) or len(choices) < 2 or not all(isinstance(c, str) for c in choices):
        raise ValueError("field 'choices' must be a list of at least 2 strings")
    if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(choices):
        raise ValueError(f"field 'answer' must be an index into choices (0..{len(choices) - 1}), got {answer!r}")
    subject = value.get("subject") or "all"
    if not isinstance(subject, str):
        raise ValueError("field 'subject' must be a string")
    return ChoiceItem(question, tuple(choices), answer, subject)


def _csv_items(path: Path) -> list[ChoiceItem]:
    subject = path.stem
    for suffix in ("_test", "_dev", "_val"):
        subject = subject.removesuffix(suffix)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(path, f"cannot read as UTF-8 text: {err}") from None
    items = []
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            line = reader.line_num
            if len(row) < 4:
                message = f"expected question, at least 2 choices and the answer letter, got {len(row)} columns"
                raise DatasetError(path, message, line=line)
            question, *choices, letter = row
            letter = letter.strip().upper()
            if len(letter) != 1 or letter not in LETTERS[: len(choices)]:
                message = f"answer must be a letter A..{LETTERS[len(choices) - 1]}, got {row[-1]!r}"
                raise DatasetError(path, message, line=line)
            items.append(ChoiceItem(question, tuple(choices), LETTERS.index(letter), subject))
    except csv.Error as err:
        raise DatasetError(path, f"invalid CSV: {err}", line=reader.line_num) from None
    if not items:
        raise DatasetError(path, "no records")
    return items


# ------------------------------------------------------------------------------------------------ scoring


def _letter_prompt(item: ChoiceItem) -> str:
    about = f" about {item.subject.replace('_', ' ')}" if item.subject != "all" else ""
    options = "\n".join(f"{LETTERS[i]}. {choice}" for i, choice in enumerate(item.choices))
    return f"The following are multiple choice questions (with answers){about}.\n\n{item.question}\n{options}\nAnswer:"


def _contexts_and_continuations(
    items: list[ChoiceItem], tokenizer: PreTrainedTokenizerBase, scoring: str
) -> list[tuple[str, str]]:
    """(context, continuation) for every choice of every item, in item order."""
    pairs = []
    for item in items:
        if scoring == "letter":
            context = _letter_prompt(item)
            pairs.extend((context, f" {LETTERS[i]}") for i in range(len(item.choices)))
        else:
            user = [{"role": "user", "content": item.question}]
            context = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
            pairs.extend((context, choice) for choice in item.choices)
    return pairs


def _encode(tokenizer: PreTrainedTokenizerBase, pairs: list[tuple[str, str]]) -> EncodedPairs:
    """Token ids of context + continuation, with the continuation's span; tokenized whole so that the boundary
    merges as it would in running text (the context alone where its tokens are not a prefix of the whole)."""
    contexts = tokenizer([c for c, _ in pairs], add_special_tokens=False)["input_ids"]
    wholes = tokenizer([c + x for c, x in pairs], add_special_tokens=False)["input_ids"]
    sequences, starts, ends = [], [], []
    for context, whole, (_, continuation) in zip(contexts, wholes, pairs, strict=True):
        if whole[: len(context)] != context:
            whole = context + tokenizer(continuation, add_special_tokens=False)["input_ids"]
        start = len(context)
        if len(whole) > MAX_SEQ_LEN:  # keep the continuation, cut the question from the left
            cut = len(whole) - MAX_SEQ_LEN
            whole, start = whole[cut:], start - cut
        sequences.append(np.asarray(whole, dtype=np.int64))
        starts.append(start)
        ends.append(len(whole))
    return EncodedPairs(sequences, np.asarray(starts), np.asarray(ends), 0)


def _single_token_letters(
    tokenizer: PreTrainedTokenizerBase, items: list[ChoiceItem]
) -> tuple[list[list[int]], list[int]] | None:
    """The letter prompts' tokens and each letter's token, where every `` A``, `` B``... is one token appended to
    its prompt's tokens (as with the usual BPE tokenizers): then one forward per item scores all its letters."""
    letters = LETTERS[: max(len(item.choices) for item in items)]
    tokens = [tokenizer(f" {letter}", add_special_tokens=False)["input_ids"] for letter in letters]
    if any(len(ids) != 1 for ids in tokens):
        return None
    prompts = [_letter_prompt(item) for item in items]
    contexts = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    for prompt, context in zip(prompts, contexts, strict=True):
        wholes = tokenizer([prompt + f" {letter}" for letter in letters], add_special_tokens=False)["input_ids"]
        if any(whole != [*context, *token] for whole, token in zip(wholes, tokens, strict=True)):
            return None
    return [list(context[-MAX_SEQ_LEN:]) for context in contexts], [ids[0] for ids in tokens]


def choice_loglikelihoods(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, items: list[ChoiceItem], scoring: str
) -> list[np.ndarray]:
    """Per item, the log-likelihood of each choice (summed over its tokens), in one batched pass."""
    letters = _single_token_letters(tokenizer, items) if scoring == "letter" else None
    if letters is not None:
        logprobs = next_token_logprobs(model, letters[0], tokenizer.pad_token_id, letters[1])
        return [logprobs[i, : len(item.choices)] for i, item in enumerate(items)]
    encoded = _encode(tokenizer, _contexts_and_continuations(items, tokenizer, scoring))
    sums = -score_rows(model, encoded, range(len(encoded)), tokenizer.pad_token_id).loss_sums.double().numpy()
    offsets = np.cumsum([0] + [len(item.choices) for item in items])
    return [sums[offsets[i] : offsets[i + 1]] for i in range(len(items))]


@dataclass(frozen=True)
class MultipleChoice:
    """Accuracy of the most likely choice, overall and per subject, in percentage points."""

    items: tuple[ChoiceItem, ...]
    scoring: str = "choice_text"

    @classmethod
    def from_spec(cls, spec: MultipleChoiceSpec) -> MultipleChoice:
        return cls(tuple(load_choice_items(spec.path)), spec.scoring)

    def predictions(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> np.ndarray:
        """The index of the choice the model picks for each item."""
        scores = choice_loglikelihoods(model, tokenizer, list(self.items), self.scoring)
        return np.array([int(np.argmax(s)) for s in scores])

    def score(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> BenchmarkScore:
        correct = self.predictions(model, tokenizer) == np.array([item.answer for item in self.items])
        return BenchmarkScore.of(correct, [item.subject for item in self.items])
