"""The fixed, clean, multi-family benchmark whose exact-match accuracy is the testbed's score (its MMLU)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cache

from tuneahead_ray.testbed._families import BENCHMARK_FAMILIES, MAX_LEVEL

__all__ = ["BENCHMARK_SEED", "ITEMS_PER_CELL", "BenchmarkItem", "benchmark_items"]

#: Fixed seed: the benchmark is the same on every machine and in every version of a corpus.
BENCHMARK_SEED = 20_261_128
#: Items per (family, level) cell of the default benchmark: 6 x 5 x 160 = 4,800 items, so that the binomial
#: standard error of a score near 50% is 0.7pp (MMLU's 14,042 items: 0.4pp).
ITEMS_PER_CELL = 160
#: The first benchmark had 16 items per cell (480 items); every benchmark starts each cell with (a prefix of) them.
_CORE_PER_CELL = 16


@dataclass(frozen=True)
class BenchmarkItem:
    family: str
    level: int
    prompt: str
    answer: str


def _cells(seed: int, per_cell: int) -> list[list[tuple[str, str]]]:
    rng = random.Random(seed)
    return [
        [fam.sample(rng, level) for _ in range(per_cell)]
        for fam in BENCHMARK_FAMILIES
        for level in range(1, MAX_LEVEL + 1)
    ]


@cache
def benchmark_items(items_per_cell: int = ITEMS_PER_CELL) -> tuple[BenchmarkItem, ...]:
    """``items_per_cell`` clean items for every (benchmark family, level), cell by cell.

    Every cell starts with the same 16 items (the original 480-item benchmark, of which a smaller benchmark takes a
    prefix of each cell), so every benchmark of at least 16 items per cell contains the 480-item one; the items past
    16 come from a second fixed stream shared by the cells, so they differ between sizes. Cells whose item space is
    small (the 16 entities of a knowledge level, the 100 sums of level 1) repeat items,
    which weights them evenly rather than adding new ones.
    """
    if items_per_cell < 1:
        raise ValueError(f"items_per_cell must be >= 1, got {items_per_cell}")
    core = _cells(BENCHMARK_SEED, _CORE_PER_CELL)
    extra = _cells(BENCHMARK_SEED + 1, max(0, items_per_cell - _CORE_PER_CELL))
    cells = [(c + e)[:items_per_cell] for c, e in zip(core, extra, strict=True)]
    families = [(fam.name, level) for fam in BENCHMARK_FAMILIES for level in range(1, MAX_LEVEL + 1)]
    return tuple(
        BenchmarkItem(name, level, prompt, answer)
        for (name, level), cell in zip(families, cells, strict=True)
        for prompt, answer in cell
    )
