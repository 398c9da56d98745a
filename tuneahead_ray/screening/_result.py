"""What a screening returns: the ranked, decided table and everything the report shows beside it."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from tuneahead_ray._private.workers import WorkerFailure

__all__ = ["ScreeningResult"]


@dataclass
class ScreeningResult:
    """The ranked candidates with predictions and decisions, the summary, and the SHAP explanations."""

    table: pd.DataFrame
    summary: dict
    explanations: dict[str, dict] = field(default_factory=dict)
    importance: dict[str, float] = field(default_factory=dict)
    datasets: pd.DataFrame = field(default_factory=pd.DataFrame)
    failures: list[WorkerFailure] = field(default_factory=list)
