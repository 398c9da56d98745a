"""Hyperparameters as features: numbers the predictor reads, the schedule as a categorical code."""

from __future__ import annotations

import math

from tuneahead_ray.schemas import LORA_TARGET_MODULES, LR_SCHEDULES, HyperParams

__all__ = ["hp_features", "lr_integral"]

_MLP = {"gate_proj", "up_proj", "down_proj"}


def lr_integral(hp: HyperParams, total_steps: int) -> float:
    """The learning rate the run's schedule spends over all its steps (sum of the per-step lr, warmup included):
    lr, schedule shape, warmup and length in one number, exactly as the trainer's scheduler computes them."""
    import torch
    from transformers import get_scheduler

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=hp.lr)
    schedule = get_scheduler(
        hp.lr_schedule,
        optimizer,
        num_warmup_steps=round(hp.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )
    multiplier = schedule.lr_lambdas[0]
    return hp.lr * math.fsum(multiplier(step) for step in range(total_steps))


def hp_features(hp: HyperParams, num_examples: int) -> dict[str, float]:
    """Hyperparameters as numbers; the schedule is an integer code (a categorical feature)."""
    total = hp.total_steps(num_examples)
    return {
        "hp_log10_lr": math.log10(hp.lr),
        "hp_lora_r": float(hp.lora_r),
        "hp_lora_alpha": float(hp.lora_alpha),
        "hp_lora_scale": hp.lora_alpha / hp.lora_r,
        "hp_lora_dropout": hp.lora_dropout,
        "hp_n_target_modules": float(len(hp.target_modules)) / len(LORA_TARGET_MODULES),
        "hp_targets_mlp": float(bool(_MLP & set(hp.target_modules))),
        "hp_batch_size": float(hp.batch_size),
        "hp_total_steps": float(total),
        "hp_epochs_equiv": total * hp.batch_size / max(num_examples, 1),
        "hp_warmup_ratio": hp.warmup_ratio,
        "hp_lr_schedule": float(LR_SCHEDULES.index(hp.lr_schedule)),
        "hp_weight_decay": hp.weight_decay,
        "hp_max_seq_len": float(hp.max_seq_len),
        "hp_max_grad_norm": hp.max_grad_norm if hp.max_grad_norm is not None else float("nan"),  # NaN: no clipping
        "hp_log10_lr_integral": math.log10(max(lr_integral(hp, total), 1e-30)),
    }
