"""Testbed dataset generator with quality knobs (size, noise, duplication, difficulty, mix, corruption, drift)."""

from __future__ import annotations

import copy
import random
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tuneahead_ray.data import write_jsonl
from tuneahead_ray.testbed._families import (
    BENCHMARK_FAMILIES,
    FAMILIES,
    MAX_LEVEL,
    OFF_TARGET_FAMILIES,
    family,
)

#: A sound fine-tune of the embedded model (the demo's and the testbed spread benchmark's reference run).
DEMO_HP = Path(__file__).resolve().parent / "hp_tiny.yaml"

__all__ = ["DEMO_HP", "DataSpec", "generate_records", "write_dataset"]


def _equal_mix() -> dict[str, float]:
    return {fam.name: 1.0 for fam in BENCHMARK_FAMILIES}


class DataSpec(BaseModel):
    """Knobs of a synthetic training dataset. Every knob moves the fine-tuned score in a known direction."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    size: int = Field(2000, ge=1, le=10_000_000, description="Number of records.")
    families: dict[str, float] = Field(
        default_factory=_equal_mix, description="Relative weight of each task family in the mix."
    )
    min_level: int = Field(1, ge=1, le=MAX_LEVEL, description="Easiest difficulty level in the data.")
    max_level: int = Field(MAX_LEVEL, ge=1, le=MAX_LEVEL, description="Hardest difficulty level in the data.")
    label_noise: float = Field(0.0, ge=0, le=1, description="Share of answers replaced by a wrong answer.")
    duplication: float = Field(0.0, ge=0, lt=1, description="Share of records that repeat an earlier record.")
    format_corruption: float = Field(
        0.0, ge=0, le=1, description="Share of records whose prompt or answer format is corrupted."
    )
    off_target: float = Field(
        0.0, ge=0, le=1, description="Share of records drawn from off-target families the benchmark ignores."
    )
    seed: int = Field(0, ge=0)

    @field_validator("families")
    @classmethod
    def _known_families(cls, value: dict[str, float]) -> dict[str, float]:
        for name, weight in value.items():
            family(name)
            if weight < 0:
                raise ValueError(f"weight of family {name!r} must be >= 0, got {weight}")
        if not any(weight > 0 for weight in value.values()):
            raise ValueError("at least one family needs a positive weight")
        return value

    @model_validator(mode="after")
    def _level_range(self) -> DataSpec:
        if self.min_level > self.max_level:
            raise ValueError(f"min_level ({self.min_level}) must be <= max_level ({self.max_level})")
        return self


def _wrong_answer(rng: random.Random, name: str, level: int, prompt: str, answer: str) -> str:
    """A plausible wrong answer: the answer to another instance of the same family and level."""
    for _ in range(20):
        _, other = FAMILIES[name].sample(rng, level)
        if other != answer:
            return other
    return answer + rng.choice("0123456789")


_ANSWER_CORRUPTIONS = (
    lambda a: f"Answer: {a}",
    lambda a: f"{a}.",
    lambda a: f"'{a}'",
    lambda a: f"{a} !",
    lambda a: a[:-1] if len(a) > 1 else a + a,
)
_PROMPT_CORRUPTIONS = (
    lambda p: p.upper(),
    lambda p: p.replace(" ", "", 1),
    lambda p: p + " ??",
    lambda p: p[: max(1, len(p) - 2)],
)


def _corrupt(rng: random.Random, prompt: str, answer: str) -> tuple[str, str]:
    """Mangle the format the way scraped instruction data is mangled: the answer usually, the prompt sometimes."""
    if rng.random() < 0.7:
        return prompt, rng.choice(_ANSWER_CORRUPTIONS)(answer)
    return rng.choice(_PROMPT_CORRUPTIONS)(prompt), answer


def generate_records(spec: DataSpec) -> list[dict]:
    """Records in chat format, with ``family`` and ``level`` kept alongside for analysis."""
    rng = random.Random(spec.seed)
    names = [name for name, weight in spec.families.items() if weight > 0]
    weights = [spec.families[name] for name in names]
    off_target = [fam.name for fam in OFF_TARGET_FAMILIES]
    records: list[dict] = []
    for _ in range(spec.size):
        if records and rng.random() < spec.duplication:
            records.append(copy.deepcopy(rng.choice(records)))
            continue
        name = rng.choice(off_target) if rng.random() < spec.off_target else rng.choices(names, weights)[0]
        level = rng.randint(spec.min_level, spec.max_level)
        prompt, answer = FAMILIES[name].sample(rng, level)
        if rng.random() < spec.label_noise:
            answer = _wrong_answer(rng, name, level, prompt, answer)
        if rng.random() < spec.format_corruption:
            prompt, answer = _corrupt(rng, prompt, answer)
        records.append(
            {
                "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}],
                "family": name,
                "level": level,
            }
        )
    return records


def write_dataset(spec: DataSpec, path: str | Path) -> Path:
    """Generate a dataset and write it as chat-format JSONL."""
    return write_jsonl(generate_records(spec), path)
