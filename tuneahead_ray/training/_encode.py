"""Prompt/response pairs to token ids with the model's own chat template, loss only on the response."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

__all__ = ["EncodedPairs", "encode_pairs", "collate"]

IGNORE_INDEX = -100


@dataclass(frozen=True)
class EncodedPairs:
    """Token ids of each example and where its response starts (everything before is masked from the loss)."""

    input_ids: list[np.ndarray]
    response_start: np.ndarray
    response_end: np.ndarray
    truncated: int

    def __len__(self) -> int:
        return len(self.input_ids)


def _split_template(tokenizer: PreTrainedTokenizerBase, prompt: str, response: str) -> tuple[str, str]:
    """Render one exchange and split it where the assistant's answer begins."""
    user = [{"role": "user", "content": prompt}]
    head = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(
        user + [{"role": "assistant", "content": response}], tokenize=False, add_generation_prompt=False
    )
    if not full.startswith(head):
        # Templates that rewrite earlier turns: fall back to the plain concatenation.
        return head, response + (tokenizer.eos_token or "")
    return head, full[len(head) :]


def encode_pairs(
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    responses: Sequence[str],
    max_seq_len: int,
) -> EncodedPairs:
    """Encode pairs, truncating the prompt first so the answer survives; count what had to be cut.

    The response is kept up to and including the first end-of-turn token, which is where generation stops.
    """
    split = [_split_template(tokenizer, p, r) for p, r in zip(prompts, responses, strict=True)]
    heads, tails = [h for h, _ in split], [t for _, t in split]
    head_ids = tokenizer(heads, add_special_tokens=False)["input_ids"]
    tail_ids = tokenizer(tails, add_special_tokens=False)["input_ids"]
    eos = tokenizer.convert_tokens_to_ids(tokenizer.eos_token) if tokenizer.eos_token else None
    sequences, starts, ends, truncated = [], [], [], 0
    for head, tail in zip(head_ids, tail_ids, strict=True):
        if eos is not None and eos in tail:
            tail = tail[: tail.index(eos) + 1]
        tail = tail[: max_seq_len - 1]
        room = max_seq_len - len(tail)
        if len(head) > room:
            truncated += 1
            head = head[len(head) - room :]
        sequences.append(np.asarray(head + tail, dtype=np.int64))
        starts.append(len(head))
        ends.append(len(head) + len(tail))
    return EncodedPairs(sequences, np.asarray(starts), np.asarray(ends), truncated)


def collate(
    pairs: EncodedPairs, indices: Sequence[int], pad_id: int, device: torch.device | None = None
) -> dict[str, torch.Tensor]:
    """Right-padded batch with labels masked outside each response, on ``device`` when given."""
    width = max(len(pairs.input_ids[i]) for i in indices)
    input_ids = torch.full((len(indices), width), pad_id, dtype=torch.long)
    labels = torch.full((len(indices), width), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((len(indices), width), dtype=torch.long)
    for row, i in enumerate(indices):
        ids = torch.from_numpy(pairs.input_ids[i])
        input_ids[row, : len(ids)] = ids
        attention[row, : len(ids)] = 1
        start, end = int(pairs.response_start[i]), int(pairs.response_end[i])
        labels[row, start:end] = ids[start:end]
    batch = {"input_ids": input_ids, "attention_mask": attention, "labels": labels}
    return batch if device is None else {key: value.to(device) for key, value in batch.items()}
