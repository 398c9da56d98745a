"""Screening a candidate grid: the driver, its predictors and costs, the demo, and the ``screen`` command."""

from tuneahead_ray.screening._cli import add_screening_commands, run_screening
from tuneahead_ray.screening._costs import budget_seconds, full_run_seconds, full_run_tokens, run_costs
from tuneahead_ray.screening._demo import DEMO_DATASETS, DEMO_GRID, write_demo
from tuneahead_ray.screening._driver import GO, NO_GO, ScreeningResult, probe_set, screen
from tuneahead_ray.screening._predictors import (
    SCREENING_TARGET,
    ScreeningPredictors,
    default_corpus_path,
    load_predictors,
)

__all__ = [
    "DEMO_DATASETS",
    "DEMO_GRID",
    "GO",
    "NO_GO",
    "SCREENING_TARGET",
    "ScreeningPredictors",
    "ScreeningResult",
    "add_screening_commands",
    "budget_seconds",
    "default_corpus_path",
    "full_run_seconds",
    "full_run_tokens",
    "load_predictors",
    "probe_set",
    "run_costs",
    "run_screening",
    "screen",
    "write_demo",
]
