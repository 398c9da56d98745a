"""Screening a candidate grid: the grid spec, the go/no-go policies, the driver's stages, its predictors and costs,
the demo and launching the GO runs. The ``screen``, ``launch`` and ``demo`` commands are :mod:`.cli`.

The decisions (``GO``, ``NO_GO``) and the policy names (``Policy``) are :mod:`tuneahead_ray.constants`', re-exported.
"""

from tuneahead_ray.constants import GO, NO_GO, Policy
from tuneahead_ray.screening._costs import budget_seconds, full_run_seconds, full_run_tokens, run_costs
from tuneahead_ray.screening._demo import DEMO_DATASETS, DEMO_GRID, write_demo
from tuneahead_ray.screening._driver import probe_set, screen
from tuneahead_ray.screening._grid import (
    Budget,
    CostModel,
    GridSpec,
    RangeAxis,
    expand_grid,
    grid_output_dir,
    load_grid,
)
from tuneahead_ray.screening._policies import Selection, select, success_probability
from tuneahead_ray.screening._predictors import (
    SCREENING_TARGET,
    ScreeningPredictors,
    default_corpus_path,
    load_predictors,
)
from tuneahead_ray.screening._result import ScreeningResult

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
