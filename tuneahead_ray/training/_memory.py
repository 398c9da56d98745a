"""Does a run's largest batch fit its device, and does it need gradient (activation) checkpointing to fit?

Decided before the first step from the model's shape, the largest padded batch of the run and the device's free
memory, so that a batch too large is a clear error up front rather than a CUDA out-of-memory error midway through a
probe. Checkpointing recomputes each decoder layer's activations in the backward pass instead of keeping them: the
values, and so the run, are the same (random state included: recomputation replays it), at about a third more
compute. On a CPU, memory is the host's and nothing is planned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from tuneahead_ray.schemas import HyperParams
from tuneahead_ray.training._encode import EncodedPairs
from tuneahead_ray.training._head import CHUNK_TOKENS, _causal_lm, uses_answer_head

__all__ = [
    "BatchTooLargeError",
    "Checkpointing",
    "MemoryPlan",
    "disable_checkpointing",
    "enable_checkpointing",
    "plan_memory",
]

Checkpointing = Literal["auto", "on", "off"]
#: Share of the device's free memory a plan may use (the allocator's fragmentation and the optimizer need the rest).
USABLE_SHARE = 0.9
GIB = 1 << 30


class BatchTooLargeError(ValueError):
    """The run's largest batch does not fit its device even with gradient checkpointing."""


@dataclass(frozen=True)
class MemoryPlan:
    """The memory estimate of a run's largest batch and how it trains: ``checkpoint_every`` is None without
    gradient checkpointing, else every how many decoder layers one is checkpointed (1: all of them; more: only as
    many as the batch needs, where transformers can checkpoint a share of the layers)."""

    checkpoint_every: int | None
    batch_tokens: int
    activation_bytes: int
    checkpointed_bytes: int
    free_bytes: int | None

    @property
    def checkpointing(self) -> bool:
        return self.checkpoint_every is not None


def _partial_checkpointing_supported(model: torch.nn.Module) -> bool:
    return hasattr(_causal_lm(model), "activation_checkpointing_enable")


def enable_checkpointing(model: torch.nn.Module, every: int) -> None:
    """Gradient checkpointing of every ``every``-th decoder layer (non-reentrant: no input gradients needed)."""
    lm = _causal_lm(model)
    if _partial_checkpointing_supported(model):
        lm.activation_checkpointing_enable({"use_reentrant": False}, every_n_layers=every)
    else:
        lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def disable_checkpointing(model: torch.nn.Module) -> None:
    lm = _causal_lm(model)
    if not getattr(lm, "supports_gradient_checkpointing", False):
        return
    if hasattr(lm, "activation_checkpointing_disable"):
        lm.activation_checkpointing_disable()
    else:
        lm.gradient_checkpointing_disable()


def _bytes_per_token_layer(config, dtype_bytes: int) -> int:
    """Activations one decoder layer keeps per token for the backward pass (attention through SDPA or
    FlashAttention, which keep no attention matrix; LoRA branches and norms' fp32 copies included). Calibrated on
    a Qwen2.5-7B-shaped model in bf16 (57.7 GiB peak at 8 x 512 tokens)."""
    hidden = config.hidden_size
    intermediate = getattr(config, "intermediate_size", None) or 4 * hidden
    return dtype_bytes * (16 * hidden + 6 * intermediate)


def _head_bytes(model: torch.nn.Module, config, tokens: int, dtype_bytes: int) -> int:
    """Logits memory: one chunk of answer positions on the answer-head path, the whole batch otherwise."""
    positions = min(tokens, CHUNK_TOKENS) if uses_answer_head(model) else tokens
    return positions * config.vocab_size * (dtype_bytes + 8)  # logits, their fp32 copy and its gradient


def _free_bytes(model: torch.nn.Module) -> int | None:
    """Free memory of the fullest CUDA device the model occupies, or None off CUDA."""
    devices = {p.device for p in model.parameters() if p.device.type == "cuda"}
    if not devices:
        return None
    return min(torch.cuda.mem_get_info(device)[0] for device in devices) * len(devices)


def plan_memory(
    model: torch.nn.Module, pairs: EncodedPairs, hp: HyperParams, mode: Checkpointing = "auto"
) -> MemoryPlan:
    """Estimate the largest batch's memory and choose checkpointing (``mode`` "on"/"off" forces it).

    Raises :class:`BatchTooLargeError` on a GPU when the batch cannot fit even with checkpointing.
    """
    config = _causal_lm(model).config
    dtype_bytes = next(model.parameters()).element_size()
    longest = max((len(ids) for ids in pairs.input_ids), default=0)
    tokens = hp.batch_size * min(longest, hp.max_seq_len)
    per_layer = _bytes_per_token_layer(config, dtype_bytes)
    head = _head_bytes(model, config, tokens, dtype_bytes)
    layers = config.num_hidden_layers
    kept_input = tokens * config.hidden_size * dtype_bytes  # what a checkpointed layer keeps

    def needs(every: int | None) -> int:
        checkpointed_layers = 0 if every is None else -(-layers // every)
        recompute = tokens * per_layer if checkpointed_layers else 0
        return (layers - checkpointed_layers) * tokens * per_layer + checkpointed_layers * kept_input + recompute + head

    activations, checkpointed = needs(None), needs(1)
    free = _free_bytes(model)
    if mode != "auto" or free is None:
        return MemoryPlan(1 if mode == "on" else None, tokens, activations, checkpointed, free)
    usable = USABLE_SHARE * free
    if activations <= usable:
        return MemoryPlan(None, tokens, activations, checkpointed, free)
    if checkpointed > usable:
        raise BatchTooLargeError(
            f"batch {hp.batch_size} x {min(longest, hp.max_seq_len)} tokens needs ~{checkpointed / GIB:.1f} GiB of "
            f"activations even with gradient checkpointing, {free / GIB:.1f} GiB free: lower batch_size or "
            "max_seq_len, or give each worker more GPUs (gpus_per_worker)"
        )
    candidates = range(layers, 0, -1) if _partial_checkpointing_supported(model) else [1]
    every = next(n for n in candidates if needs(n) <= usable)  # the fewest checkpointed layers that fit
    return MemoryPlan(every, tokens, activations, checkpointed, free)
