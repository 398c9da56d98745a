"""The default predictor: trained on the shipped corpus of runs of the embedded model the first time it is needed
and cached in the model store format (LightGBM text + hashed JSON card) under ``$TUNEAHEAD_CACHE``.

``screen`` (``predictor: default``) and ``serve`` (``model_dir: default``) both use it, so they agree.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from tuneahead_ray import __version__
from tuneahead_ray._private.cache import cache_root
from tuneahead_ray.features import FEATURE_GROUPS, protocol_path, read_protocol
from tuneahead_ray.predictor._metadataset import load_metadataset
from tuneahead_ray.predictor._score_predictor import PredictorConfig, ScorePredictor
from tuneahead_ray.predictor._store import CARD_FILE, CARD_VERSION, save_predictor

__all__ = [
    "DEFAULT_TARGET",
    "FULL_GROUPS",
    "PRESCREEN_GROUPS",
    "default_corpus_path",
    "default_predictor_dir",
    "ensure_default_predictor",
]

#: The corpus column the default predictors learn: the fine-tuned model's benchmark score (pp).
DEFAULT_TARGET = "score"
#: Bumped when the way a default predictor is fitted changes within a release (2: it records what the runs whose
#: probe diverged scored, see ScorePredictor.non_finite_probes; 3: novelty on the dataset's features), so a cached one
#: fitted before is not reused.
_PREDICTOR_REVISION = 3
#: Feature groups of the full TuneAhead predictor and of the probe-free pre-screen predictor.
FULL_GROUPS: tuple[str, ...] = ("static", "probe", "dataset_probe", "hp")
PRESCREEN_GROUPS: tuple[str, ...] = ("static", "hp")


def default_corpus_path() -> Path:
    """The corpus of completed runs of the embedded model that ships with the package (package data, so that a
    wheel install has it too; in a checkout it is a link to the repository's ``corpus/corpus.parquet``)."""
    return Path(__file__).resolve().parents[1] / "testbed" / "assets" / "corpus" / "corpus.parquet"


def default_predictor_dir(corpus: Path, groups: tuple[str, ...] = FULL_GROUPS) -> Path:
    """The cache directory of a default predictor: keyed by the corpus and its protocol, the feature lists and the
    regressor's default settings, so that a release changing any of them trains a new one instead of a stale one."""
    digest = hashlib.sha256(corpus.read_bytes())
    protocol = protocol_path(corpus)
    if protocol.is_file():
        digest.update(protocol.read_bytes())
    for group in groups:
        digest.update(repr(FEATURE_GROUPS[group]).encode())
    digest.update(PredictorConfig().model_dump_json().encode())
    digest.update(f"card {CARD_VERSION} package {__version__} {_PREDICTOR_REVISION}".encode())
    return cache_root() / "predictors" / f"{'-'.join(groups)}-{digest.hexdigest()[:16]}"


def ensure_default_predictor(groups: tuple[str, ...] = FULL_GROUPS) -> Path:
    """The directory of the default predictor on ``groups``, trained on the shipped corpus if not cached yet."""
    corpus = default_corpus_path()
    if not corpus.is_file():
        raise FileNotFoundError(f"the default predictor needs the shipped corpus at {corpus}")
    directory = default_predictor_dir(corpus, groups)
    if not (directory / CARD_FILE).is_file():
        table = load_metadataset(corpus, DEFAULT_TARGET)
        features = [name for group in groups for name in FEATURE_GROUPS[group]]
        save_predictor(ScorePredictor(features).fit(table, DEFAULT_TARGET), directory, read_protocol(corpus))
    return directory
