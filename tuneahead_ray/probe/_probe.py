"""Run the probe: the candidate's own first K steps, with gradient and landscape measurements on the side.

Measurements run in eval mode with their own random generator, so the probe's trajectory is exactly the first K
steps of the full run (a GO run can resume from the probe's saved state). The "before" scores are the base
model's (a fresh adapter is the identity) and come from a :class:`BaseScores` a worker shares across candidates.
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from dataclasses import dataclass, field

import torch

from tuneahead_ray.probe._base_scores import BaseScores, answer_loss_sums, is_identity_adapter, mean_answer_loss
from tuneahead_ray.probe._reference import ReferenceScore, score_reference
from tuneahead_ray.probe._spec import ProbeSpec
from tuneahead_ray.training import EncodedPairs, StepTrainer, eval_mode

__all__ = ["ProbeTrace", "run_probe"]


@dataclass
class ProbeTrace:
    """Everything the probe recorded: per-step series and the interval measurements."""

    total_steps: int
    losses: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    tokens: int = 0
    consistency: list[float] = field(default_factory=list)
    sparsity: list[float] = field(default_factory=list)
    param_change: list[float] = field(default_factory=list)
    flatness: list[float] = field(default_factory=list)
    heldout_before: float = float("nan")
    heldout_after: float = float("nan")
    reference_before: ReferenceScore | None = None
    reference_after: ReferenceScore | None = None
    seconds: float = 0.0


def _flat_grad(params: list[torch.nn.Parameter]) -> torch.Tensor:
    """Every adapter gradient in one fp32 vector, on the first parameter's device (a sharded model's adapters sit
    on several)."""
    device = params[0].device
    return torch.cat([p.grad.detach().reshape(-1).float().to(device) for p in params if p.grad is not None])


def _hoyer_sparsity(vector: torch.Tensor) -> float:
    """Hoyer's measure: 0 for a dense, equal-magnitude vector, 1 for a single non-zero entry."""
    n = vector.numel()
    l2 = float(vector.norm())
    if n < 2 or l2 == 0.0:
        return float("nan")
    root = n**0.5
    return (root - float(vector.abs().sum()) / l2) / (root - 1)


@torch.no_grad()
def _eval_loss(trainer: StepTrainer, batch: dict[str, torch.Tensor]) -> float:
    with eval_mode(trainer.model):
        return float(trainer.loss_on(batch))


@torch.no_grad()
def _perturbed_loss_change(
    trainer: StepTrainer, batch: dict[str, torch.Tensor], loss: float, radius: float, generator: torch.Generator
) -> float:
    """Loss change when every adapter tensor moves by Gaussian noise of std ``radius`` x its RMS.

    ``loss`` is the step's own loss on ``batch``; it equals the eval-mode loss unless the adapter has dropout.
    """
    before = loss if trainer.hp.lora_dropout == 0 else _eval_loss(trainer, batch)
    params = [p.detach() for p in trainer.params]
    norms = torch.stack(torch._foreach_norm(params)).float().tolist()
    noises = [torch.randn(p.shape, generator=generator, dtype=torch.float32).to(p.device, p.dtype) for p in params]
    scales = [radius * max(n / p.numel() ** 0.5, 1e-3) for n, p in zip(norms, params, strict=True)]
    torch._foreach_mul_(noises, scales)
    saved = [p.clone() for p in params]  # restored by copy: (p + noise) - noise is not always p in floating point
    torch._foreach_add_(params, noises)
    after = _eval_loss(trainer, batch)
    torch._foreach_copy_(params, saved)
    return after - before


def run_probe(
    trainer: StepTrainer,
    steps: int,
    spec: ProbeSpec,
    reference: EncodedPairs | None = None,
    base: BaseScores | None = None,
    data_key: Hashable = None,
) -> ProbeTrace:
    """Run ``steps`` steps of ``trainer`` (a fresh candidate run) and record the probe's measurements.

    ``reference`` (see :func:`encode_reference`) is scored before and after the steps when given. ``base`` keeps
    the base model's scores across calls (``data_key`` names the trainer's dataset and encoding in it); without
    one, or when the fresh adapter is not the identity, they are measured here.
    """
    started = time.perf_counter()
    trace = ProbeTrace(total_steps=trainer.total_steps)
    if base is not None and data_key is None:
        raise ValueError("run_probe: a shared BaseScores needs the data_key of the trainer's dataset")
    if base is None or not is_identity_adapter(trainer.model):
        base, data_key = BaseScores(), None  # measured here, for this candidate only
    heldout = trainer.unvisited_this_epoch(spec.heldout_size)
    trace.heldout_before = base.heldout_loss(trainer.model, data_key, trainer.pairs, heldout, trainer.pad_id)
    if reference is not None:
        reference_key = (spec.reference_path, spec.reference_size)
        trace.reference_before = base.reference(trainer.model, reference_key, reference, trainer.pad_id)
    start_params = [p.detach().clone() for p in trainer.params]
    generator = torch.Generator().manual_seed(trainer.hp.seed)
    interval = spec.interval_for(steps)
    previous: dict[str, torch.Tensor] = {}

    def measure(tr: StepTrainer, batch: dict[str, torch.Tensor], loss: float) -> None:
        step = tr.steps_done
        if step % interval == interval - 1:
            previous["grad"] = _flat_grad(tr.params)
        elif step % interval == 0:
            grad = _flat_grad(tr.params)
            if "grad" in previous:
                cosine = torch.nn.functional.cosine_similarity(grad, previous.pop("grad"), dim=0)
                trace.consistency.append(float(cosine))
            trace.sparsity.append(_hoyer_sparsity(grad))
            moved = torch._foreach_sub([p.detach() for p in tr.params], start_params)
            trace.param_change.append(float(torch.stack(torch._foreach_norm(moved)).float().norm()))
            trace.flatness.append(_perturbed_loss_change(tr, batch, loss, spec.flatness_radius, generator))

    for _ in range(steps):
        record = trainer.step(inspect=measure)
        trace.losses.append(record.loss)
        trace.grad_norms.append(record.grad_norm)
        trace.lrs.append(record.lr)
        trace.tokens += record.tokens
        if not record.finite:
            break
    trace.heldout_after = mean_answer_loss(*answer_loss_sums(trainer.model, trainer.pairs, heldout, trainer.pad_id))
    if reference is not None:
        trace.reference_after = score_reference(trainer.model, reference, trainer.pad_id)
    trace.seconds = time.perf_counter() - started
    return trace
