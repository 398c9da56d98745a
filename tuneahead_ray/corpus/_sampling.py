"""Sampling corpus runs: testbed data knobs x a realistic LoRA hyperparameter space."""

from __future__ import annotations

import random

from pydantic import BaseModel, ConfigDict

from tuneahead_ray.schemas import HyperParams, content_hash
from tuneahead_ray.testbed import BENCHMARK_FAMILIES, DataSpec

__all__ = ["MAX_RUN_STEPS", "MIN_RUN_STEPS", "CorpusSpec", "sample_corpus_specs", "dominant_family"]

#: Every corpus run has at least this many steps, so the 20-step minimum probe is at most 5% of it (the paper's
#: probe is < 5% of a run) ...
MIN_RUN_STEPS = 400
#: ... and at most this many, which bounds the build's cost (mean ~750 steps, 10% of runs above ~1,200).
MAX_RUN_STEPS = 1600

_FAMILY_NAMES = [fam.name for fam in BENCHMARK_FAMILIES]
_PROBLEMS = ["label_noise", "duplication", "format_corruption", "off_target"]
_TARGETS = (
    ("q_proj", "v_proj"),
    ("q_proj", "k_proj", "v_proj", "o_proj"),
    ("gate_proj", "up_proj", "down_proj"),
    ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
)


class CorpusSpec(BaseModel):
    """One corpus run: how its training data is generated and how it is trained."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    data: DataSpec
    hp: HyperParams

    def run_id(self) -> str:
        return content_hash({"data": self.data.model_dump(mode="json"), "hp": self.hp.identity()})


def dominant_family(spec: DataSpec) -> str:
    """The family with the largest weight: the group for family-held-out splits."""
    return max(spec.families.items(), key=lambda item: (item[1], item[0]))[0]


def _knob(rng: random.Random, active: bool, high: float) -> float:
    return round(rng.uniform(0.05, high), 3) if active else 0.0


def _family_mix(rng: random.Random) -> dict[str, float]:
    roll = rng.random()
    if roll < 0.7:
        return {name: 1.0 for name in _FAMILY_NAMES}
    if roll < 0.9:
        return {name: round(rng.expovariate(1.0), 3) + 0.01 for name in _FAMILY_NAMES}
    focus = rng.sample(_FAMILY_NAMES, rng.choice([1, 2]))
    return {name: (4.0 if name == focus[0] else 1.0) for name in focus}


def _sample_data(rng: random.Random, seed: int) -> DataSpec:
    """60% clean data; otherwise one or two quality problems, like real scraped instruction data."""
    problems = [] if rng.random() < 0.6 else rng.sample(_PROBLEMS, rng.choice([1, 1, 2]))
    return DataSpec(
        size=int(round(10 ** rng.uniform(3.0, 4.0))),  # 1,000 .. 10,000 records
        families=_family_mix(rng),
        min_level=1,
        max_level=rng.choice([2, 3, 4, 5, 5, 5]),
        label_noise=_knob(rng, "label_noise" in problems, 1.0),
        duplication=_knob(rng, "duplication" in problems, 0.9),
        format_corruption=_knob(rng, "format_corruption" in problems, 0.8),
        off_target=_knob(rng, "off_target" in problems, 1.0),
        seed=seed,
    )


def _sample_hp(rng: random.Random, seed: int) -> HyperParams:
    rank = rng.choice([2, 4, 8, 16, 32])
    return HyperParams(
        lr=round(10 ** rng.uniform(-3.3, -1.8), 7),  # 5e-4 .. 1.6e-2: a practitioner's range, both tails included
        lora_r=rank,
        lora_alpha=float(rank * rng.choice([1, 2, 4])),
        lora_dropout=rng.choice([0.0, 0.0, 0.05, 0.1]),
        target_modules=rng.choice(_TARGETS),
        batch_size=rng.choice([8, 16, 16, 32]),
        epochs=float(rng.choice([1, 2, 2, 3])),
        warmup_ratio=rng.choice([0.0, 0.03, 0.1]),
        lr_schedule=rng.choice(["linear", "cosine", "constant", "constant_with_warmup"]),
        weight_decay=rng.choice([0.0, 0.0, 0.01, 0.1]),
        max_seq_len=rng.choice([32, 48, 64, 64]),
        seed=seed,
    )


def sample_corpus_specs(
    count: int, seed: int = 0, min_steps: int = MIN_RUN_STEPS, max_steps: int = MAX_RUN_STEPS
) -> list[CorpusSpec]:
    """``count`` deterministic corpus runs; a run whose schedule (records x epochs / batch) is outside
    [``min_steps``, ``max_steps``] is redrawn, so run lengths keep the spread that data size, epochs and batch
    size give them."""
    if not 1 <= min_steps <= max_steps:
        raise ValueError(f"need 1 <= min_steps <= max_steps, got {min_steps} and {max_steps}")
    rng = random.Random(seed)
    specs: list[CorpusSpec] = []
    while len(specs) < count:
        index = len(specs)
        spec = CorpusSpec(data=_sample_data(rng, seed * 1_000_003 + index), hp=_sample_hp(rng, index))
        if min_steps <= spec.hp.total_steps(spec.data.size) <= max_steps:
            specs.append(spec)
    return specs
