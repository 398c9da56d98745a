"""The language-model head on answer positions only, in chunks: the loss and scores of a large-vocabulary model
without materialising fp32 logits for the whole batch.

A causal LM's plain forward computes logits at every position of every row, ``batch x length x vocab`` of them,
and its loss upcasts them all to fp32: at a 152k vocabulary and 8 x 1024 tokens that is 5 GB of logits, kept for
the backward pass. Only answer positions carry a loss, so this path runs the decoder, gathers the hidden states
of the positions that predict an answer token, and applies the head to those in chunks. In training each chunk is
checkpointed (its logits are recomputed in the backward pass instead of kept). The value is the plain loss's
(token-weighted mean cross-entropy over answer tokens), up to floating-point summation order, so small-vocabulary
models (the embedded one) keep the plain forward and their results stay bit for bit what they were.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

from tuneahead_ray.training._encode import IGNORE_INDEX

__all__ = [
    "ANSWER_HEAD_MIN_VOCAB",
    "answer_head_loss",
    "answer_head_scores",
    "answer_scores_from_hidden",
    "decoder_hidden_states",
    "last_position_logits",
    "uses_answer_head",
]

#: From this vocabulary size on, losses and scores go through the chunked answer-position head.
ANSWER_HEAD_MIN_VOCAB = 16_384
#: Answer positions per chunk of logits (2,048 x 152k fp32 logits: 1.2 GB).
CHUNK_TOKENS = 2_048


def _causal_lm(model: torch.nn.Module) -> torch.nn.Module:
    """The ``...ForCausalLM`` module under a peft wrapper (its LoRA layers are injected in place)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def uses_answer_head(model: torch.nn.Module) -> bool:
    """Whether ``model`` should use the answer-position head: a large vocabulary and a plain linear head (no logit
    soft-capping or scaling, which this path does not reproduce)."""
    lm = _causal_lm(model)
    config = getattr(lm, "config", None)
    if config is None or getattr(config, "vocab_size", 0) < ANSWER_HEAD_MIN_VOCAB:
        return False
    if getattr(config, "final_logit_softcapping", None) or getattr(config, "logit_scale", None):
        return False
    return callable(getattr(lm, "get_decoder", None)) and lm.get_output_embeddings() is not None


def decoder_hidden_states(
    model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """The decoder's last hidden states (after its final norm): what the head turns into logits."""
    return _causal_lm(model).get_decoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def last_position_logits(
    model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, last: torch.Tensor
) -> torch.Tensor:
    """Logits at position ``last`` of every row: the head applied there only for a large vocabulary, else read
    from the plain forward."""
    rows = torch.arange(len(last), device=input_ids.device)
    if uses_answer_head(model):
        hidden = decoder_hidden_states(model, input_ids, attention_mask)
        return _causal_lm(model).get_output_embeddings()(hidden[rows.to(hidden.device), last.to(hidden.device)])
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    return logits[rows.to(logits.device), last.to(logits.device)]


def _at_answers(hidden: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hidden states of the positions that predict an answer token, their target tokens and their rows."""
    targets = labels[:, 1:].to(hidden.device)
    scored = targets != IGNORE_INDEX
    rows = torch.nonzero(scored, as_tuple=True)[0]
    return hidden[:, :-1][scored], targets[scored], rows


def _answer_positions(
    model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return _at_answers(decoder_hidden_states(model, input_ids, attention_mask), labels)


def _chunk_loss_sum(head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = head(hidden).float()  # on the head's device: a sharded model's last GPU
    return torch.nn.functional.cross_entropy(logits, targets.to(logits.device), reduction="sum")


def answer_head_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Token-weighted mean cross-entropy over the batch's answer tokens, as the model's own loss, in chunks."""
    hidden, targets, _ = _answer_positions(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
    if len(targets) == 0:
        return hidden.sum() * float("nan")  # the plain loss of a batch without answer tokens
    head = _causal_lm(model).get_output_embeddings()
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, len(targets), CHUNK_TOKENS):
        chunk = slice(start, start + CHUNK_TOKENS)
        if torch.is_grad_enabled():
            part = checkpoint(_chunk_loss_sum, head, hidden[chunk], targets[chunk], use_reentrant=False)
        else:
            part = _chunk_loss_sum(head, hidden[chunk], targets[chunk])
        total = total + part.to(total.device)
    return total / len(targets)


@torch.no_grad()
def answer_head_scores(
    model: torch.nn.Module, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per row: summed answer cross-entropy, answer tokens, and answer tokens the arg-max gets right, from logits
    at answer positions only, in chunks."""
    hidden = decoder_hidden_states(model, batch["input_ids"], batch["attention_mask"])
    return answer_scores_from_hidden(model, hidden, batch["labels"])


@torch.no_grad()
def answer_scores_from_hidden(
    model: torch.nn.Module, hidden: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`answer_head_scores` from decoder hidden states already computed (``labels`` -100 outside answers)."""
    size = hidden.shape[0]
    hidden, targets, rows = _at_answers(hidden, labels)
    head = _causal_lm(model).get_output_embeddings()
    loss_sums = torch.zeros(size, dtype=torch.float32, device=hidden.device)
    hits = torch.zeros(size, dtype=torch.long, device=hidden.device)
    for start in range(0, len(targets), CHUNK_TOKENS):
        chunk = slice(start, start + CHUNK_TOKENS)
        logits = head(hidden[chunk]).float()
        chunk_targets = targets[chunk].to(logits.device)
        losses = torch.nn.functional.cross_entropy(logits, chunk_targets, reduction="none")
        loss_sums.index_add_(0, rows[chunk], losses.to(loss_sums.device))
        hits.index_add_(0, rows[chunk], (logits.argmax(dim=-1) == chunk_targets).long().to(hits.device))
    counts = torch.bincount(rows, minlength=size)
    return loss_sums.cpu(), counts.cpu(), hits.cpu()
