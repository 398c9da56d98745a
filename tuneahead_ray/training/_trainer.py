"""LoRA adapters on a loaded base model and a step-at-a-time trainer that honours every hyperparameter.

The same trainer runs a full fine-tune and a K-step probe, so a probe is literally the first K steps of the
candidate's own run.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import PreTrainedModel, get_scheduler

from tuneahead_ray.schemas import HyperParams
from tuneahead_ray.training._encode import EncodedPairs, collate
from tuneahead_ray.training._head import answer_head_loss, uses_answer_head
from tuneahead_ray.training._memory import Checkpointing, disable_checkpointing, enable_checkpointing, plan_memory

__all__ = ["StepRecord", "StepTrainer", "attach_adapter", "detach_adapter", "length_grouped", "lora_config"]

logger = logging.getLogger(__name__)


def lora_config(hp: HyperParams) -> LoraConfig:
    """The peft config of the candidate's adapter."""
    return LoraConfig(
        r=hp.lora_r,
        lora_alpha=hp.lora_alpha,
        lora_dropout=hp.lora_dropout,
        target_modules=list(hp.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )


def attach_adapter(model: PreTrainedModel, hp: HyperParams) -> PeftModel:
    """Wrap the base model with a fresh, seeded LoRA adapter; only adapter weights are trainable."""
    torch.manual_seed(hp.seed)
    return get_peft_model(model, lora_config(hp))


def detach_adapter(model: PeftModel) -> PreTrainedModel:
    """Remove the adapter without merging it, handing back the untouched base model (gradient checkpointing, if a
    run turned it on, off again)."""
    base = model.unload()
    disable_checkpointing(base)
    return base


#: Batches per megabatch of length grouping (Hugging Face Trainer's default).
MEGABATCH_BATCHES = 50


def length_grouped(order: np.ndarray, lengths: list[int], batch_size: int) -> np.ndarray:
    """``order`` cut into megabatches of up to 50 batches (fewer on small datasets), each sorted by length,
    longest first, with the longest row of all moved to the front so that a batch too large fails at the first
    step (as Hugging Face Trainer's ``group_by_length`` does). Consecutive ``batch_size`` slices then hold rows of
    similar length."""
    batches = max(1, min(len(order) // (batch_size * 4), MEGABATCH_BATCHES))
    size = batches * batch_size
    megabatches = [
        sorted(order[start : start + size].tolist(), key=lambda i: -lengths[i]) for start in range(0, len(order), size)
    ]
    longest = max(range(len(megabatches)), key=lambda m: lengths[megabatches[m][0]])
    megabatches[0][0], megabatches[longest][0] = megabatches[longest][0], megabatches[0][0]
    return np.asarray([i for megabatch in megabatches for i in megabatch], dtype=np.int64)


@dataclass(frozen=True)
class StepRecord:
    """What one optimizer step saw: its loss, the gradient norm before clipping, the lr it used, its tokens."""

    step: int
    loss: float
    grad_norm: float
    lr: float
    tokens: int

    @property
    def finite(self) -> bool:
        return math.isfinite(self.loss) and math.isfinite(self.grad_norm)


class StepTrainer:
    """AdamW, lr schedule and clipping on the parameters that require grad; shuffled epochs; one step() at a time."""

    def __init__(
        self,
        model: PreTrainedModel | PeftModel,
        pairs: EncodedPairs,
        hp: HyperParams,
        total_steps: int,
        pad_id: int,
        checkpointing: Checkpointing = "auto",
    ):
        """``checkpointing``: gradient checkpointing "on", "off", or "auto" (when the largest batch would not fit
        the GPU without it; see :func:`plan_memory`, which raises when it cannot fit at all). It changes no value."""
        if len(pairs) == 0:
            raise ValueError("cannot train on an empty dataset")
        self.model = model
        self.pairs = pairs
        self.hp = hp
        self.total_steps = total_steps
        self.pad_id = pad_id
        self.device = next(model.parameters()).device
        self.params = [p for p in model.parameters() if p.requires_grad]
        self._answer_head = uses_answer_head(model)
        self.memory = plan_memory(model, pairs, hp, checkpointing)
        if self.memory.checkpoint_every is not None:
            enable_checkpointing(model, self.memory.checkpoint_every)
        self.optimizer = torch.optim.AdamW(self.params, lr=hp.lr, weight_decay=hp.weight_decay)
        self.scheduler = get_scheduler(
            hp.lr_schedule,
            self.optimizer,
            num_warmup_steps=round(hp.warmup_ratio * total_steps),
            num_training_steps=total_steps,
        )
        self._rng = np.random.default_rng(hp.seed)
        self._order: np.ndarray = self._epoch_order()
        self._cursor = 0
        self.steps_done = 0
        model.train()

    def _epoch_order(self) -> np.ndarray:
        """A new shuffled order of the rows, length-grouped when the run asks for it."""
        order = self._rng.permutation(len(self.pairs))
        if not self.hp.group_by_length:
            return order
        return length_grouped(order, [len(ids) for ids in self.pairs.input_ids], self.hp.batch_size)

    def _next_indices(self) -> list[int]:
        """The next batch in the current epoch's permutation, drawing a new permutation when it runs out."""
        batch: list[int] = []
        while len(batch) < self.hp.batch_size:
            if self._cursor >= len(self._order):
                self._order = self._epoch_order()
                self._cursor = 0
            take = self._order[self._cursor : self._cursor + self.hp.batch_size - len(batch)]
            batch.extend(int(i) for i in take)
            self._cursor += len(take)
        return batch

    def unvisited_this_epoch(self, count: int) -> list[int]:
        """The last ``count`` indices of the current epoch's order: rows the coming steps reach last."""
        return [int(i) for i in self._order[max(self._cursor, len(self._order) - count) :]]

    def next_batch(self) -> dict[str, torch.Tensor]:
        return collate(self.pairs, self._next_indices(), self.pad_id, self.device)

    def loss_on(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The model's token-weighted mean answer loss on ``batch`` (answer positions only, in chunks, for a
        large-vocabulary model: see :mod:`._head`)."""
        return answer_head_loss(self.model, batch) if self._answer_head else self.model(**batch).loss

    def step(self, inspect: Callable[[StepTrainer, dict[str, torch.Tensor], float], None] | None = None) -> StepRecord:
        """One optimizer step; a non-finite loss or gradient is recorded and the update skipped.

        ``inspect(trainer, batch, loss)`` runs after the backward pass and before the update, with the gradients
        in place; a probe uses it to measure without changing the trajectory.
        """
        batch = self.next_batch()
        lr = self.scheduler.get_last_lr()[0]
        loss = self.loss_on(batch)
        tokens = int(batch["attention_mask"].sum())
        self.steps_done += 1
        if not torch.isfinite(loss):
            self.optimizer.zero_grad(set_to_none=True)
            self.scheduler.step()  # a skipped update still uses up its place in the schedule
            return StepRecord(self.steps_done, float("nan"), float("nan"), lr, tokens)
        loss.backward()
        max_norm = self.hp.max_grad_norm if self.hp.max_grad_norm is not None else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, max_norm))
        if inspect is not None and math.isfinite(grad_norm):
            inspect(self, batch, float(loss.detach()))
        if math.isfinite(grad_norm):
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return StepRecord(self.steps_done, float(loss.detach()), grad_norm, lr, tokens)

    def save_state(self, directory: str | Path) -> Path:
        """Adapter weights, optimizer moments, schedule, data position and random state (the CPU's and, on a GPU, the
        run device's), so a run can resume exactly here.

        Tensors go to safetensors and the rest to JSON: nothing is pickled.
        """
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        tensors = {f"param.{i}": p.detach().cpu().contiguous() for i, p in enumerate(self.params)}
        for i, p in enumerate(self.params):
            for key, value in self.optimizer.state.get(p, {}).items():
                tensors[f"optim.{i}.{key}"] = (
                    torch.as_tensor(value).detach().cpu().reshape(-1 if key == "step" else value.shape)
                )
        tensors["torch_rng"] = torch.get_rng_state()
        if self.device.type == "cuda":  # dropout on a GPU draws from the device's generator, not the CPU's
            tensors["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        save_file(tensors, str(out / "trainer_state.safetensors"))
        meta = {
            "steps_done": self.steps_done,
            "total_steps": self.total_steps,
            "cursor": self._cursor,
            "order": self._order.tolist(),
            "numpy_rng": self._rng.bit_generator.state,
            "device_type": self.device.type,
            # The schedule's lambdas are code, rebuilt from hp on restore; only their position is state.
            "scheduler": {**self.scheduler.state_dict(), "lr_lambdas": [None] * len(self.optimizer.param_groups)},
            "hp": self.hp.model_dump(mode="json"),
        }
        (out / "trainer_state.json").write_text(json.dumps(meta), encoding="utf-8")
        return out

    def _restore_rng(self, tensors: dict[str, torch.Tensor], saved_on: str, source: Path) -> None:
        """The CPU generator and, for a state saved on a GPU, the run device's generator."""
        torch.set_rng_state(tensors["torch_rng"])
        if "cuda_rng" in tensors and self.device.type == "cuda":
            torch.cuda.set_rng_state(tensors["cuda_rng"], self.device)
        elif saved_on != self.device.type:
            logger.warning(
                "%s: trainer state saved on %s, resumed on %s: the run continues, but random draws (dropout) and "
                "kernels differ from the uninterrupted run's",
                source,
                saved_on,
                self.device.type,
            )

    def restore_state(self, directory: str | Path) -> None:
        """Continue from ``save_state``: same weights, moments, lr position and next batch."""
        source = Path(directory)
        meta = json.loads((source / "trainer_state.json").read_text(encoding="utf-8"))
        # Compared by identity: a state saved before group_by_length existed (unset) is the same run as one with it off.
        saved = HyperParams.model_validate(meta["hp"])
        if saved.identity() != self.hp.identity() or meta["total_steps"] != self.total_steps:
            raise ValueError(f"{source}: saved state belongs to a different run (hyperparameters or length differ)")
        tensors = load_file(str(source / "trainer_state.safetensors"))
        with torch.no_grad():
            for i, p in enumerate(self.params):
                p.copy_(tensors[f"param.{i}"].to(p.device))
                moments = {k.rsplit(".", 1)[1]: v for k, v in tensors.items() if k.startswith(f"optim.{i}.")}
                if moments:
                    moments["step"] = moments["step"].reshape(())
                    self.optimizer.state[p] = {k: v.to(p.device) if k != "step" else v for k, v in moments.items()}
        self._restore_rng(tensors, meta.get("device_type", "cpu"), source)
        self.scheduler.load_state_dict(meta["scheduler"])
        for group, lr in zip(self.optimizer.param_groups, self.scheduler.get_last_lr(), strict=True):
            group["lr"] = lr
        self._rng.bit_generator.state = meta["numpy_rng"]
        self._order = np.asarray(meta["order"], dtype=np.int64)
        self._cursor = meta["cursor"]
        self.steps_done = meta["steps_done"]
