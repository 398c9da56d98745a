"""Exact-match accuracy of a causal LM on prompt/answer items, in one batched forward pass per chunk.

An answer counts as correct when greedy decoding reproduces it token for token and then ends the turn. Greedy
decoding is deterministic, so this equals checking that the arg-max at every answer position (and at the
end-of-turn position) is the reference token: one teacher-forced forward pass instead of a decoding loop.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from tuneahead_ray.training._encode import IGNORE_INDEX, EncodedPairs, collate, encode_pairs
from tuneahead_ray.training._head import answer_head_scores, last_position_logits, uses_answer_head

__all__ = [
    "SCORING_TOKEN_BUDGET",
    "AnswerScores",
    "answer_agreement",
    "answer_token_losses",
    "eval_mode",
    "exact_match",
    "exact_match_by_group",
    "next_token_logprobs",
    "score_rows",
]

#: Most padded tokens in one scoring forward pass; rows that fit are scored in a single batch.
SCORING_TOKEN_BUDGET = 65_536


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """``model`` in eval mode (no dropout) inside the block, back in the mode it was in afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def answer_token_losses(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row of a teacher-forced batch: summed cross-entropy over the answer tokens and their number.
    ``labels`` is -100 outside the answer."""
    targets = labels[:, 1:].to(logits.device)
    losses = torch.nn.functional.cross_entropy(
        logits[:, :-1].transpose(1, 2).float(), targets, ignore_index=IGNORE_INDEX, reduction="none"
    )
    return losses.sum(dim=1), (targets != IGNORE_INDEX).sum(dim=1)


def answer_agreement(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row of a teacher-forced batch: does the arg-max reproduce every answer token (greedy exact match),
    and what share of the answer tokens does it reproduce? ``labels`` is -100 outside the answer."""
    # Position t predicts token t+1.
    targets, guesses = labels[:, 1:], logits.argmax(dim=-1)[:, :-1].to(labels.device)
    scored = targets != -100
    agree = guesses == targets
    exact = (agree | ~scored).all(dim=1)
    token_share = (agree & scored).sum(dim=1).double() / scored.sum(dim=1).clamp(min=1).double()
    return exact, token_share


@dataclass(frozen=True)
class AnswerScores:
    """Per row, teacher-forced in eval mode: summed answer-token cross-entropy, answer tokens, greedy exact match
    of the whole answer and the share of answer tokens the arg-max reproduces."""

    loss_sums: torch.Tensor
    counts: torch.Tensor
    exact: torch.Tensor
    token_share: torch.Tensor

    @property
    def mean_loss(self) -> float:
        """Token-weighted mean answer loss (NaN without answer tokens)."""
        total = int(self.counts.sum())
        return float(self.loss_sums.double().sum() / total) if total else float("nan")


def _batch_scores(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> AnswerScores:
    if uses_answer_head(model):
        sums, counts, hits = answer_head_scores(model, batch)
        return AnswerScores(sums, counts, hits == counts, hits.double() / counts.clamp(min=1).double())
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    sums, counts = answer_token_losses(logits, batch["labels"])
    exact, share = answer_agreement(logits, batch["labels"])
    return AnswerScores(sums.cpu(), counts.cpu(), exact.cpu(), share.cpu())


def _token_budget_batches(pairs: EncodedPairs, indices: Sequence[int], budget: int, by_length: bool) -> list[list[int]]:
    """``indices`` in length-sorted batches that each fit ``budget`` padded tokens; unless ``by_length``, as one
    batch when they fit together (the embedded model's scores stay those of one batch, bit for bit)."""
    lengths = {i: len(pairs.input_ids[i]) for i in indices}
    if not by_length and len(indices) * max(lengths.values()) <= budget:
        return [list(indices)]
    batches: list[list[int]] = [[]]
    for i in sorted(indices, key=lengths.__getitem__, reverse=True):  # the first row of a batch is its longest
        if batches[-1] and (len(batches[-1]) + 1) * lengths[batches[-1][0]] > budget:
            batches.append([])
        batches[-1].append(i)
    return batches


@torch.no_grad()
def next_token_logprobs(
    model: torch.nn.Module,
    contexts: Sequence[Sequence[int]],
    pad_id: int,
    token_ids: Sequence[int],
    token_budget: int = SCORING_TOKEN_BUDGET,
) -> np.ndarray:
    """Log-probability of each of ``token_ids`` as the next token after each context (rows x tokens), in eval
    mode, in length-sorted batches under ``token_budget`` padded tokens; a large-vocabulary model applies its
    head at the last position only."""
    ends = np.array([len(context) for context in contexts])
    pairs = EncodedPairs([np.asarray(context, dtype=np.int64) for context in contexts], ends, ends, 0)
    device = next(model.parameters()).device
    wanted = torch.tensor(list(token_ids))
    result = np.zeros((len(contexts), len(token_ids)))
    with eval_mode(model):
        for rows in _token_budget_batches(pairs, range(len(pairs)), token_budget, by_length=True):
            batch = collate(pairs, rows, pad_id, device)
            last = batch["attention_mask"].sum(dim=1) - 1
            logits = last_position_logits(model, batch["input_ids"], batch["attention_mask"], last)
            logprobs = torch.log_softmax(logits.float(), dim=-1)[:, wanted.to(logits.device)]
            result[rows] = logprobs.double().cpu().numpy()
    return result


@torch.no_grad()
def score_rows(
    model: torch.nn.Module,
    pairs: EncodedPairs,
    indices: Sequence[int],
    pad_id: int,
    token_budget: int = SCORING_TOKEN_BUDGET,
) -> AnswerScores:
    """:class:`AnswerScores` of rows ``indices`` (in that order), in eval mode, consuming no randomness.

    A large-vocabulary (real) model scores rows in length-sorted batches of at most ``token_budget`` padded
    tokens, with logits at answer positions only (:mod:`._head`); a small one in one batch when they fit.
    """
    if len(indices) == 0:
        empty = torch.zeros(0)
        return AnswerScores(empty, empty.long(), empty.bool(), empty.double())
    device = next(model.parameters()).device
    position = {index: n for n, index in enumerate(indices)}  # rows are distinct
    parts: list[tuple[list[int], AnswerScores]] = []
    by_length = uses_answer_head(model)
    with eval_mode(model):
        for batch_indices in _token_budget_batches(pairs, indices, token_budget, by_length):
            parts.append((batch_indices, _batch_scores(model, collate(pairs, batch_indices, pad_id, device))))
    order = torch.tensor([position[i] for batch_indices, _ in parts for i in batch_indices])
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(len(order))
    columns = [torch.cat([getattr(scores, f.name) for _, scores in parts])[inverse] for f in fields(AnswerScores)]
    return AnswerScores(*columns)


def exact_match(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    answers: Sequence[str],
    batch_size: int = 256,
    max_seq_len: int = 512,
) -> np.ndarray:
    """Boolean per item: does greedy decoding reproduce the answer exactly?"""
    pairs = encode_pairs(tokenizer, prompts, answers, max_seq_len)
    chunks = [range(start, min(start + batch_size, len(pairs))) for start in range(0, len(pairs), batch_size)]
    hits = [score_rows(model, pairs, chunk, tokenizer.pad_token_id).exact for chunk in chunks]
    return torch.cat(hits).numpy() if hits else np.zeros(0, dtype=bool)


def exact_match_by_group(correct: np.ndarray, groups: Sequence[str]) -> dict[str, float]:
    """Accuracy in percentage points for every group label."""
    totals: dict[str, list[bool]] = defaultdict(list)
    for hit, group in zip(correct, groups, strict=True):
        totals[group].append(bool(hit))
    return {group: 100.0 * float(np.mean(hits)) for group, hits in sorted(totals.items())}
