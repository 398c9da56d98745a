"""The embedded testbed: synthetic task families, a dataset generator with quality knobs, the benchmark, and
the tiny Qwen2 base model."""

from tuneahead_ray.testbed._benchmark import BENCHMARK_SEED, ITEMS_PER_CELL, BenchmarkItem, benchmark_items
from tuneahead_ray.testbed._families import (
    BENCHMARK_FAMILIES,
    FAMILIES,
    MAX_LEVEL,
    OFF_TARGET_FAMILIES,
    TaskFamily,
    family,
)
from tuneahead_ray.testbed._generator import DEMO_HP, DataSpec, generate_records, write_dataset

__all__ = [
    "DEMO_HP",
    "BENCHMARK_FAMILIES",
    "BENCHMARK_SEED",
    "FAMILIES",
    "ITEMS_PER_CELL",
    "MAX_LEVEL",
    "OFF_TARGET_FAMILIES",
    "BenchmarkItem",
    "DataSpec",
    "TaskFamily",
    "benchmark_items",
    "family",
    "generate_records",
    "write_dataset",
]
