"""Exact-match accuracy of a causal LM on prompt/answer items, in one batched forward pass per chunk.

An answer counts as correct when greedy decoding reproduces it token for token and then ends the turn. Greedy
decoding is deterministic, so this equals checking that the arg-max at every answer position (and at the
end-of-turn position) is the reference token: one teacher-forced forward pass instead of a decoding loop.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from tuneahead_ray.training._encode import IGNORE_INDEX, collate, encode_pairs

__all__ = ["answer_agreement", "answer_token_losses", "eval_mode", "exact_match", "exact_match_by_group"]


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
    targets = labels[:, 1:]
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


@torch.no_grad()
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
    device = next(model.parameters()).device
    correct = np.zeros(len(pairs), dtype=bool)
    with eval_mode(model):
        for start in range(0, len(pairs), batch_size):
            indices = list(range(start, min(start + batch_size, len(pairs))))
            batch = collate(pairs, indices, tokenizer.pad_token_id)
            logits = model(
                input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)
            ).logits
            hits, _ = answer_agreement(logits.cpu(), batch["labels"])
            correct[start : start + len(indices)] = hits.numpy()
    return correct


def exact_match_by_group(correct: np.ndarray, groups: Sequence[str]) -> dict[str, float]:
    """Accuracy in percentage points for every group label."""
    totals: dict[str, list[bool]] = defaultdict(list)
    for hit, group in zip(correct, groups, strict=True):
        totals[group].append(bool(hit))
    return {group: 100.0 * float(np.mean(hits)) for group, hits in sorted(totals.items())}
