"""The typed ``benchmark:`` block of a grid, a ``corpus build`` or a ``run``: which benchmark scores a run.

Three kinds, validated field by field (paths resolve against the file that names them):

* ``{kind: testbed}`` — the embedded testbed benchmark (the default for the embedded model);
* ``{kind: exact_match, path: FILE}`` — prompt/answer items in any format the data loaders read, greedy decoding,
  answers compared after :func:`~tuneahead_ray.evaluation.normalise_answer`, per-group breakdown;
* ``{kind: multiple_choice, path: FILE, scoring: choice_text | letter}`` — MMLU-style items (Hugging Face layout as
  JSON/JSONL/Parquet, or the original MMLU CSV), per-subject breakdown.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from tuneahead_ray.testbed import ITEMS_PER_CELL

__all__ = [
    "Benchmark",
    "BenchmarkSpec",
    "ExactMatchSpec",
    "MultipleChoiceSpec",
    "TestbedSpec",
    "resolve_benchmark_paths",
]


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TestbedSpec(_Spec):
    """The embedded testbed benchmark: fixed clean items, exact match by teacher forcing."""

    __test__ = False  # not a pytest test class
    kind: Literal["testbed"] = "testbed"
    items_per_cell: int = Field(
        ITEMS_PER_CELL,
        ge=1,
        le=10_000,
        description="Items per (family, level) cell: 160 gives 4,800 items (the default); 16 the first 480-item "
        "benchmark, a subset of every larger one.",
    )


class ExactMatchSpec(_Spec):
    """Exact match on a file of prompt/answer items (chat, instruction or prompt/response records)."""

    kind: Literal["exact_match"]
    path: Path = Field(description="Items file (JSON, JSONL or Parquet), relative to the file that names it.")
    group_field: str = Field("group", min_length=1, description="Record field whose value groups the breakdown.")
    max_new_tokens: int | None = Field(
        None, ge=1, le=4096, description="Most tokens generated per answer (default: the longest answer + 8)."
    )
    batch_size: int = Field(32, ge=1, le=4096, description="Items decoded together.")


class MultipleChoiceSpec(_Spec):
    """MMLU-style multiple choice: accuracy of the model's choice among the item's options."""

    kind: Literal["multiple_choice"]
    path: Path = Field(
        description="Items: JSON/JSONL/Parquet with question, choices (list), answer (index) and optional subject, "
        "an MMLU CSV (no header: question, A, B, C, D, answer letter) or a directory of them (one per subject); "
        "relative to the file that names it."
    )
    scoring: Literal["choice_text", "letter"] = Field(
        "choice_text",
        description="choice_text: the log-likelihood of each choice's text after the question in the model's chat "
        "template; letter: the standard MMLU prompt with lettered options, the answer letter's log-likelihood.",
    )
    batch_size: int = Field(32, ge=1, le=4096, description="Sequences scored together.")


BenchmarkSpec = Annotated[TestbedSpec | ExactMatchSpec | MultipleChoiceSpec, Field(discriminator="kind")]


class Benchmark(RootModel[BenchmarkSpec]):
    """A ``benchmark:`` block on its own (a benchmark file)."""


def resolve_benchmark_paths(spec: TestbedSpec | ExactMatchSpec | MultipleChoiceSpec, base_dir: Path):
    """The spec with its file path made absolute against ``base_dir`` (the directory of the file naming it)."""
    if isinstance(spec, TestbedSpec) or spec.path.is_absolute():
        return spec
    return spec.model_copy(update={"path": (base_dir / spec.path).resolve()})
