"""The predictors a screening uses: the full TuneAhead model and the probe-free pre-screen model.

``default`` trains both on the shipped corpus of runs of the embedded model, once, and caches them in the model
store format (LightGBM text + hashed JSON card) under a key of the corpus hash; later screenings load the cache.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from tuneahead_ray.cache import cache_root
from tuneahead_ray.grid import GridSpec

__all__ = ["SCREENING_TARGET", "ScreeningPredictors", "cache_root", "default_corpus_path", "load_predictors"]

#: The corpus column the default predictors learn: the fine-tuned model's benchmark score (pp).
SCREENING_TARGET = "score"


def default_corpus_path() -> Path:
    """The corpus of completed runs of the embedded model that ships with the package (package data, so that a
    wheel install has it too; in a checkout it is a link to the repository's ``corpus/corpus.parquet``)."""
    return Path(__file__).resolve().parents[1] / "testbed" / "assets" / "corpus" / "corpus.parquet"


class ScreeningPredictors:
    """The full model (static + probe + hyperparameters) and the pre-screen model (static + hyperparameters)."""

    def __init__(self, full, full_card, prescreen, prescreen_card, base_score: float | None) -> None:
        self.full, self.full_card = full, full_card
        self.prescreen, self.prescreen_card = prescreen, prescreen_card
        self.base_score = base_score


def _train_default(corpus: Path, directory: Path, groups: tuple[str, ...]) -> None:
    from tuneahead_ray.predictor import ScorePredictor, corpus_feature_groups, load_metadataset, save_predictor

    table = load_metadataset(corpus, SCREENING_TARGET)
    features = [name for group in groups for name in corpus_feature_groups()[group]]
    save_predictor(ScorePredictor(features).fit(table, SCREENING_TARGET), directory)


def _default_dir(corpus: Path, groups: tuple[str, ...]) -> Path:
    """The cache directory of a default predictor: keyed by the corpus, the feature lists and the regressor's
    default settings, so that a release changing any of them trains a new one instead of reusing a stale one."""
    from tuneahead_ray.predictor import PredictorConfig, corpus_feature_groups

    digest = hashlib.sha256(corpus.read_bytes())
    for group in groups:
        digest.update(repr(corpus_feature_groups()[group]).encode())
    digest.update(PredictorConfig().model_dump_json().encode())
    return cache_root() / "predictors" / f"{'-'.join(groups)}-{digest.hexdigest()[:16]}"


def _load(spec: str, groups: tuple[str, ...], base_dir: Path):
    """A predictor from a model directory, or the default one (trained and cached on first use)."""
    from tuneahead_ray.predictor import CARD_FILE, load_predictor

    if spec != "default":
        return load_predictor(base_dir / Path(spec).expanduser())
    corpus = default_corpus_path()
    if not corpus.is_file():
        raise FileNotFoundError(f"the default predictor needs the shipped corpus at {corpus}")
    directory = _default_dir(corpus, groups)
    if not (directory / CARD_FILE).is_file():
        _train_default(corpus, directory, groups)
    return load_predictor(directory)


def _corpus_base_score() -> float:
    import pyarrow.parquet as pq

    scores = pq.read_table(default_corpus_path(), columns=["base_score"]).column("base_score").to_numpy()
    return float(scores[0])


def load_predictors(grid: GridSpec, base_dir: str | Path = ".", prescreen: bool = False) -> ScreeningPredictors:
    """The grid's predictors (``prescreen``: also the probe-free one) and the base model's score."""
    base_dir = Path(base_dir)
    full, full_card = _load(grid.predictor, ("static", "probe", "hp"), base_dir)
    pre, pre_card = _load(grid.prescreen_predictor, ("static", "hp"), base_dir) if prescreen else (None, None)
    base_score = grid.base_score
    if base_score is None and grid.predictor == "default":
        base_score = _corpus_base_score()
    return ScreeningPredictors(full, full_card, pre, pre_card, base_score)
