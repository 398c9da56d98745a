"""The corpus of completed runs (meta-features + ground truth) that the predictor learns from: the embedded
testbed's, or one sampled from a grid for any model."""

from tuneahead_ray.corpus._active import Strategy, estimated_rmse, pick_batch, plateau
from tuneahead_ray.corpus._build import PROXY_MAX_STEPS, CorpusWorker, build_corpus
from tuneahead_ray.corpus._grid import (
    GridCorpusReport,
    build_grid_corpus,
    run_compute_seconds,
    sample_candidates,
)
from tuneahead_ray.corpus._grid_active import ActiveHistory, BatchRecord, build_active_corpus
from tuneahead_ray.corpus._refeature import refeature_checkpoint, refeature_corpus
from tuneahead_ray.corpus._sampling import CorpusSpec, dominant_family, sample_corpus_specs

__all__ = [
    "PROXY_MAX_STEPS",
    "ActiveHistory",
    "BatchRecord",
    "CorpusSpec",
    "CorpusWorker",
    "GridCorpusReport",
    "Strategy",
    "build_active_corpus",
    "build_corpus",
    "build_grid_corpus",
    "dominant_family",
    "estimated_rmse",
    "pick_batch",
    "plateau",
    "refeature_checkpoint",
    "refeature_corpus",
    "run_compute_seconds",
    "sample_candidates",
    "sample_corpus_specs",
]
