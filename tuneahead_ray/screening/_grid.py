"""The candidate grid: a YAML spec of model, datasets, a hyperparameter space, a probe spec and the screening
decision (success threshold, budget, cost model, policy, predictor), and its expansion into candidates.

Axes may be a single value, a list, ``{range: [lo, hi], num: n}`` (evenly spaced) or ``{log_range: [lo, hi],
num: n}`` (log-spaced); ``samples: N`` draws N random points of the product instead of taking all of it.
Expansion is deterministic, and candidates with equal content (same id) are merged.
"""

from __future__ import annotations

import glob
import itertools
import random
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tuneahead_ray.base_models import DEFAULT_MODEL
from tuneahead_ray.constants import BUDGETED_POLICIES, THRESHOLD_POLICIES, Policy
from tuneahead_ray.data import load_dataset
from tuneahead_ray.evaluation import BenchmarkSpec, build_benchmark, resolve_benchmark_paths
from tuneahead_ray.probe import DatasetProbeSpec, ProbeSpec
from tuneahead_ray.schemas import Candidate, DatasetFormat, DatasetRef, HyperParams
from tuneahead_ray.yaml_config import ConfigError, load_yaml_model

__all__ = ["Budget", "CostModel", "GridSpec", "RangeAxis", "expand_grid", "load_grid"]

_HP_FIELDS = tuple(HyperParams.model_fields)


class RangeAxis(BaseModel):
    """``num`` values from ``lo`` to ``hi`` inclusive, linearly or log spaced."""

    model_config = ConfigDict(extra="forbid")

    range: tuple[float, float] | None = None
    log_range: tuple[float, float] | None = None
    num: int = Field(ge=1, le=10_000)

    @model_validator(mode="after")
    def _one_kind(self) -> RangeAxis:
        if (self.range is None) == (self.log_range is None):
            raise ValueError("give exactly one of 'range' or 'log_range'")
        if self.log_range is not None and min(self.log_range) <= 0:
            raise ValueError("log_range bounds must be > 0")
        return self

    def values(self) -> list[float]:
        if self.log_range is not None:
            return [float(v) for v in np.geomspace(*self.log_range, self.num)]
        return [float(v) for v in np.linspace(*self.range, self.num)]


class Budget(BaseModel):
    """Compute for the GO runs: worker (GPU) hours, or a number of average full runs of this grid."""

    model_config = ConfigDict(extra="forbid")

    gpu_hours: float | None = Field(None, gt=0, description="Worker-hours (GPU-hours on GPUs) for the GO runs.")
    full_runs: float | None = Field(None, gt=0, description="As many as this many average full runs of the grid.")

    @model_validator(mode="after")
    def _one_unit(self) -> Budget:
        if (self.gpu_hours is None) == (self.full_runs is None):
            raise ValueError("give exactly one of 'gpu_hours' or 'full_runs'")
        return self


class CostModel(BaseModel):
    """How a candidate's full-run cost is estimated (worker-seconds)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["tokens", "measured"] = Field(
        "tokens",
        description="tokens: training tokens (steps x batch x mean tokens per example) / tokens_per_second; "
        "measured: the probe's own seconds per token x the run's tokens (machine-dependent, so not reproducible)",
    )
    tokens_per_second: float = Field(
        5_000.0, gt=0, description="Training tokens per second of one worker (about a 7B LoRA run on one GPU)."
    )


class GridSpec(BaseModel):
    """What to screen. Paths are relative to the grid file."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(DEFAULT_MODEL, description="Base model directory (HF layout) or 'default'.")
    datasets: list[str] = Field(min_length=1, description="Dataset files or glob patterns.")
    format: DatasetFormat = "auto"
    hp: dict[str, Any] = Field(default_factory=dict, description="Hyperparameter axes; unset ones keep defaults.")
    samples: int | None = Field(None, ge=1, description="Random points of the product instead of all of it.")
    seed: int = Field(0, ge=0, description="Seed of the random sample.")
    probe: ProbeSpec = Field(default_factory=ProbeSpec)
    dataset_probe: DatasetProbeSpec = Field(
        default_factory=DatasetProbeSpec,
        description="The per-dataset standardized probe (fixed hyperparameters; fields not given keep the "
        "protocol's), run once per dataset with a candidate to probe; its features are dataset_probe_*.",
    )
    benchmark: BenchmarkSpec | None = Field(
        None,
        description="What scores a run (launch, corpus build): {kind: testbed} (the default, embedded model only), "
        "{kind: exact_match, path: FILE} or {kind: multiple_choice, path: FILE, scoring: choice_text | letter}",
    )
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="auto, cpu, cuda or cuda:N.")
    output_dir: str = Field("tuneahead-out", description="Where results, checkpoints and reports go.")
    threshold: float | None = Field(None, description="Success: a final score >= threshold (in the score's unit).")
    base_score: float | None = Field(
        None, description="The base model's score (default model: read from the corpus); gains are measured from it."
    )
    policy: Policy = Field(
        Policy.THRESHOLD, description="How the GO set is chosen (see tuneahead_ray.screening.select)."
    )
    top_k: int | None = Field(None, ge=0, description="Candidates to keep under the top_k policy.")
    budget: Budget | None = Field(None, description="Compute for the GO runs (the budgeted policies need one).")
    cost: CostModel = Field(default_factory=CostModel)
    probe_budget: float | None = Field(
        None,
        gt=0,
        description="Probe only this many candidates (> 1) or this share of them (<= 1): those whose probe-free "
        "prediction (static descriptors + hyperparameters) leaves them most in contention. Default: probe all.",
    )
    keep_probe_state: bool = Field(
        False,
        description="Save each probe's adapter and optimizer state under <output_dir>/probe_state, so `launch` "
        "resumes GO runs from their probes instead of starting over (disk: one adapter + optimizer state each).",
    )
    predictor: str = Field(
        "default", description="Model directory from `predictor train`, or 'default' (trained on the shipped corpus)."
    )
    prescreen_predictor: str = Field(
        "default", description="Probe-free predictor for probe_budget: a model directory, or 'default'."
    )

    def screening_errors(self) -> list[str]:
        """What the screening decision still lacks, each naming its key (a features-only grid needs none of it)."""
        errors = []
        if self.policy in THRESHOLD_POLICIES and self.threshold is None:
            errors.append(f"threshold: policy '{self.policy}' needs a success threshold")
        if self.policy == Policy.TOP_K and self.top_k is None:
            errors.append("top_k: policy 'top_k' needs it")
        if self.policy in BUDGETED_POLICIES and self.budget is None:
            errors.append(f"budget: policy '{self.policy}' needs a budget")
        if self.model != DEFAULT_MODEL and self.predictor == "default":
            errors.append(
                "predictor: the default predictor is trained on runs of the embedded model; for another base model "
                "give a model directory (build a corpus of that model's runs with `tuneahead-ray corpus build --grid`, "
                "then train one with `tuneahead-ray predictor train`)"
            )
        if self.model != DEFAULT_MODEL and self.base_score is None and self.policy == Policy.EXPECTED_GAIN:
            errors.append("base_score: policy 'expected_gain' needs the base model's score for a custom model")
        return errors

    @field_validator("hp")
    @classmethod
    def _known_axes(cls, axes: dict[str, Any]) -> dict[str, Any]:
        for key, axis in axes.items():
            if key not in _HP_FIELDS:
                raise ValueError(f"unknown hyperparameter {key!r}; known: {list(_HP_FIELDS)}")
            for value in _axis_values(key, axis):
                try:
                    HyperParams(**{key: value})
                except ValidationError as err:
                    raise ValueError(f"hp.{key} value {value!r}: {err.errors()[0]['msg']}") from None
        return axes


def _axis_values(key: str, axis: Any) -> list[Any]:
    if isinstance(axis, dict):
        try:
            return RangeAxis.model_validate(axis).values()
        except ValidationError as err:
            raise ValueError(f"hp.{key}: {err.errors()[0]['msg']}") from None
    if key == "target_modules":  # a list of modules is one value; a list of lists is an axis
        return list(axis) if axis and isinstance(axis[0], list | tuple) else [axis]
    return list(axis) if isinstance(axis, list) else [axis]


def _dataset_paths(grid: GridSpec, base_dir: Path) -> list[Path]:
    paths: list[Path] = []
    for pattern in grid.datasets:
        full = str(base_dir / Path(pattern).expanduser())
        matches = sorted(glob.glob(full)) if glob.has_magic(full) else [full]
        if not matches:
            raise ConfigError(f"datasets: pattern {pattern!r} matches no file (relative to {base_dir})")
        for match in matches:
            if not Path(match).is_file():
                raise ConfigError(f"datasets: {match} does not exist")
        paths.extend(Path(m).resolve() for m in matches)
    return list(dict.fromkeys(paths))


def expand_grid(grid: GridSpec, base_dir: str | Path = ".") -> list[Candidate]:
    """Every candidate of the grid in a stable order, duplicates (by content id) merged."""
    axes = {key: _axis_values(key, axis) for key, axis in sorted(grid.hp.items())}
    points = [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())]
    if grid.samples is not None and grid.samples < len(points):
        points = random.Random(grid.seed).sample(points, grid.samples)
    model = grid.model if grid.model == DEFAULT_MODEL else str((Path(base_dir) / grid.model).resolve())
    candidates: dict[str, Candidate] = {}
    for path in _dataset_paths(grid, Path(base_dir)):
        dataset = DatasetRef(path=path, format=grid.format)
        fingerprint = dataset.fingerprint()
        for point in points:
            candidate = Candidate(model=model, dataset=dataset, hp=HyperParams(**point))
            candidates.setdefault(candidate.candidate_id(fingerprint), candidate)
    return list(candidates.values())


def grid_output_dir(grid: GridSpec, grid_path: str | Path) -> Path:
    """The grid's ``output_dir``, relative to the grid file's directory as every path in a grid is."""
    return Path(grid_path).resolve().parent / grid.output_dir


def _checked_reference(probe: ProbeSpec, base_dir: Path, grid_path: str | Path) -> ProbeSpec:
    """The probe spec with its reference set's path resolved against the grid's folder, once the file is read
    and found valid (a bad file fails now, naming its line, not on every candidate's probe)."""
    reference = (base_dir / Path(probe.reference_path).expanduser()).resolve()
    try:
        load_dataset(DatasetRef(path=reference))
    except (OSError, ValueError) as err:
        raise ConfigError(f"{grid_path}: probe.reference_path: {err}") from None
    return probe.model_copy(update={"reference_path": str(reference)})


def load_grid(path: str | Path) -> tuple[GridSpec, list[Candidate]]:
    """Read, validate and expand a grid YAML; errors name the file and the key."""
    grid = load_yaml_model(path, GridSpec)
    base_dir = Path(path).resolve().parent
    if grid.model != DEFAULT_MODEL:  # every stage (and grid.json) sees the directory, whatever its working directory
        grid = grid.model_copy(update={"model": str((base_dir / Path(grid.model).expanduser()).resolve())})
    if grid.probe.reference_path is not None:
        grid = grid.model_copy(update={"probe": _checked_reference(grid.probe, base_dir, path)})
    if grid.benchmark is not None:
        grid = grid.model_copy(update={"benchmark": resolve_benchmark_paths(grid.benchmark, base_dir)})
        try:
            build_benchmark(grid.benchmark)  # a bad benchmark file fails now, naming its line, not after probing
        except ValueError as err:
            raise ConfigError(f"{path}: benchmark: {err}") from None
    try:
        return grid, expand_grid(grid, base_dir)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
