"""The corpus of completed runs (meta-features + ground truth) that the predictor learns from."""

from tuneahead_ray.corpus._build import PROXY_MAX_STEPS, CorpusWorker, build_corpus
from tuneahead_ray.corpus._refeature import refeature_checkpoint, refeature_corpus
from tuneahead_ray.corpus._sampling import CorpusSpec, dominant_family, sample_corpus_specs

__all__ = [
    "PROXY_MAX_STEPS",
    "CorpusSpec",
    "CorpusWorker",
    "build_corpus",
    "dominant_family",
    "refeature_checkpoint",
    "refeature_corpus",
    "sample_corpus_specs",
]
