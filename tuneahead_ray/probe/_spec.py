"""The standardized probe protocol: how many of the candidate's own first steps to run, and what to measure."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tuneahead_ray.schemas import HyperParams

__all__ = ["DATASET_PROBE_HP", "MAX_DATASET_PROBE_STEPS", "DatasetProbeSpec", "ProbeSpec"]

#: The longest dataset probe: it is charged on top of every candidate's own probe, so it stays short.
MAX_DATASET_PROBE_STEPS = 1000

#: The per-dataset probe's fixed hyperparameters: a middle-of-the-road LoRA (rank 8 on the attention projections,
#: lr 3e-3, constant) for 20 steps of 16 sequences.
DATASET_PROBE_HP = HyperParams(
    lr=3e-3,
    lora_r=8,
    lora_alpha=16.0,
    target_modules=("q_proj", "k_proj", "v_proj", "o_proj"),
    batch_size=16,
    max_steps=20,
    warmup_ratio=0.0,
    lr_schedule="constant",
    seed=0,
)


class ProbeSpec(BaseModel):
    """Probe = the first K optimizer steps of the candidate's own LoRA run, with extra measurements."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fraction: float = Field(0.05, gt=0, le=1, description="K as a share of the full run's steps.")
    min_steps: int = Field(20, ge=2, description="Floor on K, so short runs still give a trajectory.")
    max_steps: int = Field(100, ge=2, description="Cap on K (the paper probes 100 steps).")
    interval: int = Field(
        20,
        ge=2,
        description="Every this many steps, and at least twice per probe (see interval_for): gradient consistency, "
        "sparsity, parameter change and flatness (each point costs one extra forward pass on the step's batch, "
        "about half a training step, and two gradient copies).",
    )
    flatness_radius: float = Field(
        0.05, gt=0, le=1, description="Perturbation std relative to each adapter tensor's RMS (landscape flatness)."
    )
    heldout_size: int = Field(32, ge=1, description="Rows the probe reaches last, scored before and after it.")
    reference_size: int = Field(
        64, ge=0, description="Rows of the clean reference set scored before and after the probe (0: skip it)."
    )
    reference_path: str | None = Field(
        None,
        description="Dataset file of the target task to draw the reference set from; default: the testbed's "
        "clean sample of the benchmark families' training distribution (never the benchmark items).",
    )
    blowup_factor: float = Field(3.0, gt=1, description="Loss above this multiple of the initial loss = diverged.")

    @model_validator(mode="after")
    def _bounds(self) -> ProbeSpec:
        if self.min_steps > self.max_steps:
            raise ValueError(f"min_steps ({self.min_steps}) must be <= max_steps ({self.max_steps})")
        return self

    def interval_for(self, probe_steps: int) -> int:
        """Steps between measurement points of a ``probe_steps``-step probe: ``interval``, shortened to half the
        probe for short probes so that every probe measures at least two points."""
        return max(2, min(self.interval, probe_steps // 2))

    def steps_for(self, total_steps: int) -> int:
        """K for a run of ``total_steps``: fraction of it, within [min_steps, max_steps], never beyond the run."""
        return min(total_steps, max(self.min_steps, min(self.max_steps, round(self.fraction * total_steps))))


class DatasetProbeSpec(BaseModel):
    """The per-dataset standardized probe: one short LoRA run with fixed hyperparameters on the base model, shared
    by every candidate on the dataset (charged once per dataset). Its trajectory and reference-set changes are the
    ``dataset_probe_*`` features; what it measures along the way follows the candidates' :class:`ProbeSpec`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hp: HyperParams = Field(
        DATASET_PROBE_HP,
        description="Fixed hyperparameters (fields not given keep DATASET_PROBE_HP's); hp.max_steps is the probe's "
        "length in steps.",
    )

    @field_validator("hp", mode="before")
    @classmethod
    def _over_the_protocol(cls, value: object) -> object:
        """``{max_steps: 10}`` changes only the length: unset fields keep the protocol's, not HyperParams' defaults."""
        if isinstance(value, dict):
            return {**DATASET_PROBE_HP.model_dump(), **value}
        return value

    @model_validator(mode="after")
    def _fixed_length(self) -> DatasetProbeSpec:
        if self.hp.max_steps is None or not 2 <= self.hp.max_steps <= MAX_DATASET_PROBE_STEPS:
            raise ValueError(
                f"hp.max_steps: the dataset probe needs a fixed length of 2..{MAX_DATASET_PROBE_STEPS} steps, "
                f"got {self.hp.max_steps}"
            )
        return self

    def probe_spec(self, spec: ProbeSpec) -> ProbeSpec:
        """The candidates' probe spec, measuring every one of this probe's steps (validated)."""
        steps = self.hp.max_steps
        fields = {**spec.model_dump(), "fraction": 1.0, "min_steps": min(spec.min_steps, steps), "max_steps": steps}
        return ProbeSpec.model_validate(fields)
