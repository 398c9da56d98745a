"""Screening a candidate grid: the grid spec, the go/no-go policies, the driver's stages, its predictors and costs,
the demo and launching the GO runs. The ``screen``, ``launch`` and ``demo`` commands are :mod:`.cli`."""

from tuneahead_ray.screening._costs import budget_seconds, full_run_seconds, full_run_tokens, run_costs
from tuneahead_ray.screening._demo import DEMO_DATASETS, DEMO_GRID, write_demo
from tuneahead_ray.screening._driver import GO, NO_GO, ScreeningResult, probe_set, screen
from tuneahead_ray.screening._grid import (
    Budget,
    CostModel,
    GridSpec,
    RangeAxis,
    expand_grid,
    grid_output_dir,
    load_grid,
)
from tuneahead_ray.screening._policies import Policy, Selection, select, success_probability
from tuneahead_ray.screening._predictors import (
    SCREENING_TARGET,
    ScreeningPredictors,
    default_corpus_path,
    load_predictors,
)

__all__ = [
    "Budget",
    "CostModel",
    "GridSpec",
    "Policy",
    "RangeAxis",
    "Selection",
    "expand_grid",
    "grid_output_dir",
    "load_grid",
    "select",
    "success_probability",
    "DEMO_DATASETS",
    "DEMO_GRID",
    "GO",
    "NO_GO",
    "SCREENING_TARGET",
    "ScreeningPredictors",
    "ScreeningResult",
    "budget_seconds",
    "default_corpus_path",
    "full_run_seconds",
    "full_run_tokens",
    "load_predictors",
    "probe_set",
    "run_costs",
    "screen",
    "write_demo",
]
