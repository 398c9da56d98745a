"""Identity of feature rows: dataset content hashes, candidate ids, and the ground-truth columns of a run."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from tuneahead_ray.schemas import Candidate, DatasetRef, RunResult

__all__ = ["candidate_ids", "dataset_fingerprints", "outcome_columns"]


def dataset_fingerprints(candidates: Iterable[Candidate]) -> dict[Path, str]:
    """Content hash of each distinct dataset file: a grid repeats the same few datasets across many candidates."""
    return {path: DatasetRef(path=path).fingerprint() for path in {c.dataset.path for c in candidates}}


def candidate_ids(candidates: Iterable[Candidate], fingerprints: dict[Path, str]) -> dict[str, Candidate]:
    """Candidates by content id (model, dataset content, hyperparameters)."""
    return {c.candidate_id(fingerprints[c.dataset.path]): c for c in candidates}


def outcome_columns(run: RunResult) -> dict:
    """The ground-truth columns of a finished run, as a corpus (or a launch's outcomes) stores them."""
    return {
        "score": run.score,
        "base_score": run.base_score,
        "gain": run.gain,
        "per_family": json.dumps(run.per_family),
        "loss_curve": run.loss_curve,
        "diverged": run.diverged,
        "train_seconds": run.train_seconds,
        "eval_seconds": run.eval_seconds,
    }
