"""The predictors a screening uses: the full TuneAhead model and the probe-free pre-screen model.

``default`` is :func:`tuneahead_ray.predictor.ensure_default_predictor`: trained once on the shipped corpus of runs
of the embedded model, then loaded from the cache.
"""

from __future__ import annotations

from pathlib import Path

from tuneahead_ray.features import feature_protocol, protocol_mismatches
from tuneahead_ray.predictor import (
    DEFAULT_TARGET,
    FULL_GROUPS,
    PRESCREEN_GROUPS,
    default_corpus_path,
    ensure_default_predictor,
    load_predictor,
)
from tuneahead_ray.screening._grid import GridSpec

__all__ = ["SCREENING_TARGET", "ScreeningPredictors", "default_corpus_path", "load_predictors"]

#: The corpus column the default predictors learn: the fine-tuned model's benchmark score (pp).
SCREENING_TARGET = DEFAULT_TARGET


class ScreeningPredictors:
    """The full model (static + probe + hyperparameters) and the pre-screen model (static + hyperparameters);
    ``protocol_mismatches``: how the grid computes features otherwise than the predictors' training data did."""

    def __init__(
        self, full, full_card, prescreen, prescreen_card, base_score: float | None, protocol_mismatches=()
    ) -> None:
        self.full, self.full_card = full, full_card
        self.prescreen, self.prescreen_card = prescreen, prescreen_card
        self.base_score = base_score
        self.protocol_mismatches: list[str] = list(protocol_mismatches)


def _load(spec: str, groups: tuple[str, ...], base_dir: Path):
    """A predictor from a model directory, or the default one (trained and cached on first use)."""
    if spec != "default":
        return load_predictor(base_dir / Path(spec).expanduser())
    return load_predictor(ensure_default_predictor(groups))


def _corpus_base_score() -> float:
    import pyarrow.parquet as pq

    scores = pq.read_table(default_corpus_path(), columns=["base_score"]).column("base_score").to_numpy()
    return float(scores[0])


def load_predictors(grid: GridSpec, base_dir: str | Path = ".", prescreen: bool = False) -> ScreeningPredictors:
    """The grid's predictors (``prescreen``: also the probe-free one) and the base model's score."""
    base_dir = Path(base_dir)
    full, full_card = _load(grid.predictor, FULL_GROUPS, base_dir)
    pre, pre_card = _load(grid.prescreen_predictor, PRESCREEN_GROUPS, base_dir) if prescreen else (None, None)
    base_score = grid.base_score
    if base_score is None and grid.predictor == "default":
        base_score = _corpus_base_score()
    used = feature_protocol(grid.probe, grid.dataset_probe)
    mismatches = protocol_mismatches(full_card.feature_protocol, used, full.features)
    if pre_card is not None:
        mismatches += [
            f"pre-screen predictor: {m}" for m in protocol_mismatches(pre_card.feature_protocol, used, pre.features)
        ]
    return ScreeningPredictors(full, full_card, pre, pre_card, base_score, mismatches)
