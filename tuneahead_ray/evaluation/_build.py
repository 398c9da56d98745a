"""A benchmark from its ``benchmark:`` block, and the default one for a model."""

from __future__ import annotations

from pathlib import Path

from tuneahead_ray.evaluation._choice import MultipleChoice
from tuneahead_ray.evaluation._exact import GreedyExactMatch, testbed_benchmark
from tuneahead_ray.evaluation._spec import (
    Benchmark as BenchmarkBlock,
)
from tuneahead_ray.evaluation._spec import (
    ExactMatchSpec,
    MultipleChoiceSpec,
    TestbedSpec,
    resolve_benchmark_paths,
)
from tuneahead_ray.training import Benchmark
from tuneahead_ray.yaml_config import load_yaml_model

__all__ = ["build_benchmark", "default_benchmark_spec", "load_benchmark_file"]


def build_benchmark(spec: TestbedSpec | ExactMatchSpec | MultipleChoiceSpec) -> Benchmark:
    """The scorer of a spec (its items loaded and checked: a bad file is a ``DatasetError`` naming file and line)."""
    if isinstance(spec, ExactMatchSpec):
        return GreedyExactMatch.from_spec(spec)
    if isinstance(spec, MultipleChoiceSpec):
        return MultipleChoice.from_spec(spec)
    return testbed_benchmark(spec.items_per_cell)


def default_benchmark_spec(model: str) -> TestbedSpec:
    """The benchmark a run is scored on when none is given: the testbed's, for the embedded model only."""
    if model != "default":
        raise ValueError(
            f"model {model}: no benchmark given; add a `benchmark:` block (exact_match or multiple_choice on your "
            "own items file): the testbed benchmark measures only the embedded model"
        )
    return TestbedSpec()


def load_benchmark_file(path: str | Path) -> TestbedSpec | ExactMatchSpec | MultipleChoiceSpec:
    """A YAML file holding one ``benchmark:`` block's fields, validated, its paths relative to the file."""
    path = Path(path)
    spec = load_yaml_model(path, BenchmarkBlock).root
    return resolve_benchmark_paths(spec, path.resolve().parent)
