"""The model store: LightGBM text models plus a JSON card, verified by sha256 on load. Never pickle.

A directory holds ``model.txt`` (``Booster.model_to_string``), ``scale.txt`` for a normalized interval (the
|residual| model), ``novelty.npy`` for a predictor that scores novelty (its training runs in the scaled feature
space, a plain float array read with ``allow_pickle=False``) and ``card.json``. The card records what prediction
needs (feature order, target, interval, novelty bins, config) and where the model came from (training-data hash,
metrics, library and package versions, creation time), the sha256 of every model file, and its own sha256 over
everything else, so that an edited model file or card is refused rather than silently used.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import lightgbm as lgb
import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from tuneahead_ray import __version__
from tuneahead_ray._private.atomic import write_bytes_atomic
from tuneahead_ray.predictor._conformal import ConformalInterval
from tuneahead_ray.predictor._errors import ModelStoreError
from tuneahead_ray.predictor._novelty import NoveltyBins, NoveltyScore
from tuneahead_ray.predictor._score_predictor import PredictorConfig, ScorePredictor

__all__ = [
    "CARD_FILE",
    "CARD_VERSION",
    "MODEL_FILE",
    "NOVELTY_FILE",
    "SCALE_FILE",
    "IntervalCard",
    "ModelCard",
    "NoveltyCard",
    "load_predictor",
    "read_card",
    "save_predictor",
]

CARD_VERSION = 5
#: Card versions this package reads: 1 has no novelty section (such a predictor scores no novelty); 1 and 2 record
#: no feature protocol (nothing to check features against); up to 3 the novelty bins start where the novel flag
#: does (no ``flag``); up to 4 novelty is measured on every feature (no ``columns``).
READABLE_CARD_VERSIONS = (1, 2, 3, 4, 5)
MODEL_FILE = "model.txt"
SCALE_FILE = "scale.txt"
NOVELTY_FILE = "novelty.npy"
CARD_FILE = "card.json"
_LIBRARIES = ("lightgbm", "numpy", "pandas", "scikit-learn", "shap")


class IntervalCard(BaseModel):
    """The conformal interval: prediction ± ``quantile`` · max(scale, ``floor``) at coverage ``level``; the scale
    is 1 without a scale model (``normalized`` false)."""

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants")

    method: str
    level: float
    quantile: float
    normalized: bool
    floor: float


class NoveltyCard(BaseModel):
    """The novelty score and its Mondrian bins (see ``tuneahead_ray.predictor._novelty``); the training runs'
    scaled features are in ``novelty.npy``."""

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants")

    k: int
    typical: float
    center: list[float]
    scale: list[float]
    threshold: float
    edges: list[float]
    quantiles: list[float]
    #: The novelty beyond which a candidate is flagged novel (``None``: ``threshold``, as cards before version 4).
    flag: float | None = None
    #: The features novelty is measured on, in the space's column order (``None``: every feature, as cards before
    #: version 5).
    columns: list[str] | None = None


class ModelCard(BaseModel):
    """Everything about a saved predictor except the trees."""

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants")

    card_version: int
    package_version: str
    created: str
    target: str
    features: list[str]
    training_data_sha256: str
    metrics: dict[str, float | int | str]
    interval: IntervalCard
    novelty: NoveltyCard | None = None
    #: The feature protocol of the training data (probe, dataset probe, descriptors), when it was recorded.
    feature_protocol: dict | None = None
    config: PredictorConfig
    libraries: dict[str, str]
    files: dict[str, str]
    card_sha256: str = ""

    def content_sha256(self) -> str:
        """sha256 of the card's canonical JSON without ``card_sha256``."""
        payload = self.model_dump(mode="json", exclude={"card_sha256"})
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _library_versions() -> dict[str, str]:
    versions = {}
    for name in _LIBRARIES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_predictor(
    predictor: ScorePredictor, directory: str | os.PathLike[str], feature_protocol: dict | None = None
) -> ModelCard:
    """Write a fitted predictor to ``directory`` (created if needed); the card is written last.
    ``feature_protocol``: how its training data's features were computed (see
    :func:`tuneahead_ray.features.read_protocol`), so that features computed otherwise are flagged."""
    if predictor.booster is None or predictor.interval is None:
        raise RuntimeError("the predictor is not fitted: call fit() first")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    interval = predictor.interval
    models = {MODEL_FILE: predictor.booster}
    if interval.scale is not None:
        models[SCALE_FILE] = interval.scale
    texts = {name: booster.model_to_string().encode("utf-8") for name, booster in models.items()}
    novelty = None
    if predictor.novelty is not None and predictor.novelty_bins is not None:
        score, bins = predictor.novelty, predictor.novelty_bins
        novelty = NoveltyCard(
            k=score.k, typical=score.typical, center=score.center.tolist(), scale=score.scale.tolist(),
            threshold=bins.threshold, edges=list(bins.edges), quantiles=list(bins.quantiles), flag=bins.flag,
            columns=None if score.columns is None else [predictor.features[i] for i in score.columns],
        )  # fmt: skip
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(score.space, dtype=np.float64), allow_pickle=False)
        texts[NOVELTY_FILE] = buffer.getvalue()
    card = ModelCard(
        card_version=CARD_VERSION,
        package_version=__version__,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        target=predictor.target,
        features=predictor.features,
        training_data_sha256=predictor.training_sha256,
        metrics=predictor.metrics,
        interval=IntervalCard(
            method=predictor.config.interval_method,
            level=interval.level,
            quantile=interval.quantile,
            normalized=interval.scale is not None,
            floor=interval.floor,
        ),
        novelty=novelty,
        feature_protocol=feature_protocol,
        config=predictor.config,
        libraries=_library_versions(),
        files={name: _sha256(text) for name, text in texts.items()},
    )
    card = card.model_copy(update={"card_sha256": card.content_sha256()})
    for name, text in texts.items():
        write_bytes_atomic(text, directory / name)
    write_bytes_atomic((card.model_dump_json(indent=2) + "\n").encode("utf-8"), directory / CARD_FILE)
    return card


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ModelStoreError(f"{path}: missing") from None
    except OSError as err:
        raise ModelStoreError(f"{path}: cannot read: {err}") from None


def read_card(directory: str | os.PathLike[str]) -> ModelCard:
    """The verified card of a saved predictor: known version, valid fields, own sha256 intact."""
    path = Path(directory) / CARD_FILE
    try:
        raw = json.loads(_read(path))
    except json.JSONDecodeError as err:
        raise ModelStoreError(f"{path}: not JSON ({err.msg})") from None
    found = raw.get("card_version") if isinstance(raw, dict) else None
    if found not in READABLE_CARD_VERSIONS:
        readable = ", ".join(map(str, READABLE_CARD_VERSIONS))
        raise ModelStoreError(f"{path}: unknown card version {found!r} (this package reads {readable})")
    try:
        card = ModelCard.model_validate(raw)
    except ValidationError as err:
        raise ModelStoreError(f"{path}: invalid card: {err}") from None
    if card.card_sha256 != card.content_sha256():
        raise ModelStoreError(f"{path}: the card does not match its card_sha256: it was edited or corrupted")
    expected = {MODEL_FILE} | ({SCALE_FILE} if card.interval.normalized else set())
    expected |= {NOVELTY_FILE} if card.novelty is not None else set()
    if set(card.files) != expected:
        raise ModelStoreError(f"{path}: lists files {sorted(card.files)}, expected {sorted(expected)}")
    return card


def _load_booster(directory: Path, name: str, sha256: str, features: int) -> lgb.Booster:
    """A booster from a model file whose sha256 matches the card and that reads ``features`` features."""
    path = directory / name
    text = _read(path)
    if _sha256(text) != sha256:
        raise ModelStoreError(f"{path}: sha256 differs from the card's: the file was modified")
    try:
        booster = lgb.Booster(model_str=text.decode("utf-8"))
    except (lgb.basic.LightGBMError, UnicodeDecodeError) as err:
        raise ModelStoreError(f"{path}: not a LightGBM model: {err}") from None
    if booster.num_feature() != features:
        raise ModelStoreError(f"{path}: the model reads {booster.num_feature()} features, the card lists {features}")
    return booster


def _load_novelty(directory: Path, card: ModelCard) -> tuple[NoveltyScore, NoveltyBins] | None:
    """The novelty score and bins of the card, its training space read from ``novelty.npy`` (no pickle)."""
    if card.novelty is None:
        return None
    path, saved = directory / NOVELTY_FILE, card.novelty
    data = _read(path)
    if _sha256(data) != card.files[NOVELTY_FILE]:
        raise ModelStoreError(f"{path}: sha256 differs from the card's: the file was modified")
    try:
        space = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as err:
        raise ModelStoreError(f"{path}: not a NumPy array file: {err}") from None
    columns = None
    if saved.columns is not None:
        if unknown := sorted(set(saved.columns) - set(card.features)):
            raise ModelStoreError(f"{directory / CARD_FILE}: novelty.columns names no feature {unknown[0]!r}")
        columns = tuple(card.features.index(name) for name in saved.columns)
    width = len(card.features) if columns is None else len(columns)
    if space.ndim != 2 or space.shape[1] != width or space.dtype != np.float64:
        raise ModelStoreError(f"{path}: expected a float64 array of {width} columns, got {space.shape}")
    if not len(saved.center) == len(saved.scale) == width:
        raise ModelStoreError(f"{directory / CARD_FILE}: novelty center and scale need {width} values each")
    score = NoveltyScore(np.asarray(saved.center), np.asarray(saved.scale), space, saved.typical, saved.k, columns)
    flag = saved.threshold if saved.flag is None else saved.flag  # before card version 4: where the bins start
    return score, NoveltyBins(saved.threshold, tuple(saved.edges), tuple(saved.quantiles), flag)


def load_predictor(directory: str | os.PathLike[str]) -> tuple[ScorePredictor, ModelCard]:
    """A saved predictor and its card, after checking every model file's sha256 against the card."""
    directory = Path(directory)
    card = read_card(directory)
    boosters = {
        name: _load_booster(directory, name, sha256, len(card.features))
        for name, sha256 in card.files.items()
        if name != NOVELTY_FILE
    }
    interval = ConformalInterval(
        card.interval.level, card.interval.quantile, boosters.get(SCALE_FILE), card.interval.floor
    )
    predictor = ScorePredictor.restore(
        boosters[MODEL_FILE],
        features=card.features,
        target=card.target,
        interval=interval,
        config=card.config,
        metrics=card.metrics,
        training_sha256=card.training_data_sha256,
        novelty=_load_novelty(directory, card),
    )
    return predictor, card
