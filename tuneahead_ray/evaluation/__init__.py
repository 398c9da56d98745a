"""Benchmarks that score a run: the embedded testbed's, exact match on a file, multiple choice (MMLU-style).

A grid, a corpus build, ``launch`` and ``run`` name theirs in a typed ``benchmark:`` block (:data:`BenchmarkSpec`);
:func:`build_benchmark` turns it into a scorer with ``score(model, tokenizer) -> BenchmarkScore``.
"""

from tuneahead_ray.evaluation._build import build_benchmark, default_benchmark_spec, load_benchmark_file
from tuneahead_ray.evaluation._choice import ChoiceItem, MultipleChoice, choice_loglikelihoods, load_choice_items
from tuneahead_ray.evaluation._exact import (
    GreedyExactMatch,
    TeacherForcedExactMatch,
    greedy_answers,
    normalise_answer,
    testbed_benchmark,
)
from tuneahead_ray.evaluation._spec import (
    Benchmark,
    BenchmarkSpec,
    ExactMatchSpec,
    MultipleChoiceSpec,
    TestbedSpec,
    resolve_benchmark_paths,
)

__all__ = [
    "Benchmark",
    "BenchmarkSpec",
    "ChoiceItem",
    "ExactMatchSpec",
    "GreedyExactMatch",
    "MultipleChoice",
    "MultipleChoiceSpec",
    "TeacherForcedExactMatch",
    "TestbedSpec",
    "build_benchmark",
    "choice_loglikelihoods",
    "default_benchmark_spec",
    "greedy_answers",
    "load_benchmark_file",
    "load_choice_items",
    "normalise_answer",
    "resolve_benchmark_paths",
    "testbed_benchmark",
]
