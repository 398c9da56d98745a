"""Sampling corpus runs: testbed data knobs x a realistic LoRA hyperparameter space."""

from __future__ import annotations

import random

from pydantic import BaseModel, ConfigDict

from tuneahead_ray.schemas import HyperParams, content_hash
from tuneahead_ray.testbed import BENCHMARK_FAMILIES, DataSpec

__all__ = ["CorpusSpec", "sample_corpus_specs", "dominant_family"]

_FAMILY_NAMES = [fam.name for fam in BENCHMARK_FAMILIES]
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
        return content_hash(self.model_dump(mode="json"))


def dominant_family(spec: DataSpec) -> str:
    """The family with the largest weight: the group for family-held-out splits."""
    return max(spec.families.items(), key=lambda item: (item[1], item[0]))[0]


def _often_zero(rng: random.Random, high: float, p_zero: float = 0.55) -> float:
    return 0.0 if rng.random() < p_zero else round(rng.uniform(0.0, high), 3)


def _family_mix(rng: random.Random) -> dict[str, float]:
    roll = rng.random()
    if roll < 0.4:
        return {name: 1.0 for name in _FAMILY_NAMES}
    if roll < 0.7:
        return {name: round(rng.expovariate(1.0), 3) + 0.01 for name in _FAMILY_NAMES}
    focus = rng.sample(_FAMILY_NAMES, rng.choice([1, 2]))
    return {name: (4.0 if name == focus[0] else 1.0) for name in focus}


def _sample_data(rng: random.Random, seed: int) -> DataSpec:
    return DataSpec(
        size=int(round(10 ** rng.uniform(2.3, 3.6))),  # 200 .. 4000 records
        families=_family_mix(rng),
        min_level=1,
        max_level=rng.choice([2, 3, 4, 5, 5, 5]),
        label_noise=_often_zero(rng, 1.0),
        duplication=min(_often_zero(rng, 0.9), 0.9),
        format_corruption=_often_zero(rng, 0.8),
        off_target=_often_zero(rng, 1.0),
        seed=seed,
    )


def _sample_hp(rng: random.Random, seed: int) -> HyperParams:
    rank = rng.choice([2, 4, 8, 16, 32])
    return HyperParams(
        lr=round(10 ** rng.uniform(-4.5, -1.0), 7),
        lora_r=rank,
        lora_alpha=float(rank * rng.choice([1, 2, 4])),
        lora_dropout=rng.choice([0.0, 0.0, 0.05, 0.1]),
        target_modules=rng.choice(_TARGETS),
        batch_size=rng.choice([8, 16, 16, 32]),
        epochs=float(rng.choice([1, 1, 2, 3])),
        warmup_ratio=rng.choice([0.0, 0.03, 0.1]),
        lr_schedule=rng.choice(["linear", "cosine", "constant", "constant_with_warmup"]),
        weight_decay=rng.choice([0.0, 0.0, 0.01, 0.1]),
        max_seq_len=rng.choice([32, 48, 64, 64]),
        seed=seed,
    )


def sample_corpus_specs(count: int, seed: int = 0, max_steps: int = 600) -> list[CorpusSpec]:
    """``count`` deterministic corpus runs; runs longer than ``max_steps`` are redrawn to bound the cost."""
    rng = random.Random(seed)
    specs: list[CorpusSpec] = []
    while len(specs) < count:
        index = len(specs)
        spec = CorpusSpec(data=_sample_data(rng, seed * 1_000_003 + index), hp=_sample_hp(rng, index))
        if spec.hp.total_steps(spec.data.size) <= max_steps:
            specs.append(spec)
    return specs
