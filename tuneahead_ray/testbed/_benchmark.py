"""The fixed, clean, multi-family benchmark whose exact-match accuracy is the testbed's score (its MMLU)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cache

from tuneahead_ray.testbed._families import BENCHMARK_FAMILIES, MAX_LEVEL

__all__ = ["BenchmarkItem", "BENCHMARK_SEED", "benchmark_items"]

#: Fixed seed: the benchmark is the same on every machine and in every version of a corpus.
BENCHMARK_SEED = 20_261_128
ITEMS_PER_CELL = 16


@dataclass(frozen=True)
class BenchmarkItem:
    family: str
    level: int
    prompt: str
    answer: str


@cache
def benchmark_items(items_per_cell: int = ITEMS_PER_CELL) -> tuple[BenchmarkItem, ...]:
    """``items_per_cell`` clean items for every (benchmark family, level): 6 x 5 x 16 = 480 by default."""
    rng = random.Random(BENCHMARK_SEED)
    items = []
    for fam in BENCHMARK_FAMILIES:
        for level in range(1, MAX_LEVEL + 1):
            for _ in range(items_per_cell):
                prompt, answer = fam.sample(rng, level)
                items.append(BenchmarkItem(fam.name, level, prompt, answer))
    return tuple(items)
