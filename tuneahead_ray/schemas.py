"""Typed models for everything that crosses a process boundary: hyperparameters, datasets, candidates, results.

Each model validates its bounds at construction time, so a bad grid or HTTP body fails with a message that names
the field instead of surfacing later as a crash inside training.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "LORA_TARGET_MODULES",
    "LR_SCHEDULES",
    "DatasetFormat",
    "DatasetRef",
    "HyperParams",
    "Candidate",
    "RunResult",
    "content_hash",
]

#: Linear layers of a Qwen2 / Llama-style decoder that a LoRA adapter may target.
LORA_TARGET_MODULES: tuple[str, ...] = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
)
#: Learning-rate schedules, named as in ``transformers.get_scheduler``.
LR_SCHEDULES: tuple[str, ...] = (
    "linear",
    "cosine",
    "constant",
    "constant_with_warmup",
    "polynomial",
    "inverse_sqrt",
)

DatasetFormat = Literal["auto", "chat", "instruction"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def content_hash(payload: object, length: int = 16) -> str:
    """Stable hex digest of a JSON-serialisable payload (sorted keys, no whitespace)."""
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:length]


class HyperParams(_Frozen):
    """Hyperparameters of one LoRA fine-tuning run."""

    lr: float = Field(2e-4, gt=0, le=10, description="Peak learning rate of AdamW.")
    lora_r: int = Field(16, ge=1, le=1024, description="LoRA rank.")
    lora_alpha: float = Field(
        32.0, gt=0, allow_inf_nan=False, description="LoRA scaling numerator (scale = alpha / r)."
    )
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA branch.")
    target_modules: tuple[str, ...] = Field(
        LORA_TARGET_MODULES, min_length=1, description="Linear layers that get an adapter."
    )
    batch_size: int = Field(16, ge=1, le=4096, description="Sequences per optimizer step.")
    epochs: float | None = Field(
        None, gt=0, le=1000, description="Passes over the dataset; ignored when max_steps is set."
    )
    max_steps: int | None = Field(None, ge=1, description="Optimizer steps of the full run; overrides epochs.")
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="Share of the steps spent warming up the lr.")
    lr_schedule: str = Field("linear", description=f"One of {', '.join(LR_SCHEDULES)}.")
    weight_decay: float = Field(0.0, ge=0, le=1, description="AdamW decoupled weight decay.")
    max_grad_norm: float | None = Field(1.0, gt=0, description="Gradient clipping norm; None disables it.")
    max_seq_len: int = Field(512, ge=8, le=131072, description="Tokens per sequence after truncation.")
    seed: int = Field(0, ge=0, description="Seed of adapter init, data order and dropout.")
    group_by_length: bool | None = Field(
        None,
        description="Batches of rows of similar length, as Hugging Face Trainer's group_by_length: each epoch's "
        "shuffled order is cut into megabatches of up to 50 batches, each sorted by length, the longest row first. "
        "Less padding, the same rows per epoch; part of the run's definition, since it changes the data order. "
        "None: on for a model directory, off for the embedded model (its corpus was built without it).",
    )

    @field_validator("target_modules", mode="before")
    @classmethod
    def _normalise_modules(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list | tuple | set | frozenset):
            unknown = [m for m in value if m not in LORA_TARGET_MODULES]
            if unknown:
                raise ValueError(f"unknown target module(s) {unknown}; choose from {list(LORA_TARGET_MODULES)}")
            # Canonical order so that equal sets hash equally.
            return tuple(m for m in LORA_TARGET_MODULES if m in value)
        return value

    @field_validator("lr_schedule")
    @classmethod
    def _known_schedule(cls, value: str) -> str:
        if value not in LR_SCHEDULES:
            raise ValueError(f"unknown lr_schedule {value!r}; choose from {list(LR_SCHEDULES)}")
        return value

    @model_validator(mode="after")
    def _steps_or_epochs(self) -> HyperParams:
        # Exactly one of the two is set, so that equal runs get equal content hashes.
        if self.max_steps is not None:
            object.__setattr__(self, "epochs", None)
        elif self.epochs is None:
            object.__setattr__(self, "epochs", 1.0)
        return self

    def identity(self) -> dict:
        """The JSON payload that identifies the run in content hashes. Length grouping enters it only when on, so
        runs without it keep the ids they had before the field existed."""
        return self.model_dump(mode="json", exclude=None if self.group_by_length else {"group_by_length"})

    def total_steps(self, num_examples: int) -> int:
        """Optimizer steps of the full run on a dataset of ``num_examples`` records."""
        if self.max_steps is not None:
            return self.max_steps
        steps_per_epoch = max(1, -(-num_examples // self.batch_size))
        return max(1, round(steps_per_epoch * float(self.epochs or 1.0)))


class DatasetRef(_Frozen):
    """A training dataset on disk: JSON array, JSONL or Parquet in chat or instruction format."""

    path: Path = Field(description="File with the records.")
    format: DatasetFormat = Field("auto", description="Record layout; auto detects it from the first record.")

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    def fingerprint(self) -> str:
        """Content hash of the file's bytes (so a renamed copy is the same dataset)."""
        digest = hashlib.sha256()
        with open(self.path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()[:16]


class Candidate(_Frozen):
    """One candidate fine-tuning run: base model + dataset + hyperparameters."""

    model: str = Field(description="Base model directory in Hugging Face layout, or 'default'.")
    dataset: DatasetRef
    hp: HyperParams = Field(default_factory=HyperParams)

    @field_validator("model")
    @classmethod
    def _non_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("model must name a directory or 'default'")
        return value

    @model_validator(mode="after")
    def _resolve_length_grouping(self) -> Candidate:
        if self.hp.group_by_length is None:  # a candidate's run is fully defined: decide for its model
            object.__setattr__(self, "hp", self.hp.model_copy(update={"group_by_length": self.model != "default"}))
        return self

    def candidate_id(self, dataset_fingerprint: str | None = None) -> str:
        """Stable id from the content of (model, dataset, hyperparameters).

        Pass the dataset's ``fingerprint()`` to key by file content; otherwise the resolved path is used.
        """
        return content_hash(
            {
                "model": self.model,
                "dataset": dataset_fingerprint or str(self.dataset.path),
                "format": self.dataset.format,
                "hp": self.hp.identity(),
            }
        )


class RunResult(_Frozen):
    """Outcome of one full fine-tuning run and its evaluation."""

    # A diverged run has NaN losses; keep them as NaN through JSON instead of turning them into null.
    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants")

    candidate_id: str
    model: str
    dataset: str
    hp: HyperParams
    score: float = Field(description="Benchmark score of the fine-tuned model (accuracy), in pp.")
    base_score: float = Field(description="Benchmark score of the base model, in pp.")
    loss_curve: list[float] = Field(description="Training loss at every optimizer step run.")
    steps: int = Field(ge=0)
    num_examples: int = Field(ge=0)
    tokens_processed: int = Field(ge=0, description="Non-padding tokens seen by training.")
    train_seconds: float = Field(ge=0)
    eval_seconds: float = Field(ge=0)
    wall_seconds: float = Field(ge=0)
    diverged: bool = Field(description="True when the loss or the gradient became NaN/inf; training stopped there.")
    device: str
    per_family: dict[str, float] = Field(
        default_factory=dict, description="Score per group of the benchmark (task family, subject), in pp."
    )
    resumed_from: str | None = Field(None, description="Saved trainer state (a probe's) the run continued from.")

    @property
    def gain(self) -> float:
        """Score change over the base model, in pp."""
        return self.score - self.base_score
