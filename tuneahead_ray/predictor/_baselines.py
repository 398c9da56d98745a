"""TuneAhead and its baselines on a corpus table, all with ``fit(table, target)`` / ``predict(table)``.

- ``TrainMean``: the training split's mean target.
- ``StaticOnly`` / ``DynamicOnly``: the TuneAhead regressor on the static descriptors / the probe features alone.
  Hyperparameter features go to neither, as in the paper's ablation, so each baseline shows what one source of
  evidence is worth on its own.
- ``EarlyStopExtrapolation``: a power law fitted to the probe part of the loss curve, extrapolated to the run's
  last step, mapped to a score by isotonic regression fitted on the training split.
- ``ProxyLM``: the TuneAhead regressor on a smaller proxy model's fine-tuned score and gain plus the
  hyperparameter and static features (ProxyLM's recipe: proxy scores + dataset/config features into a regressor).
  ``StrongProxyLM`` is the same on the corpus's strong proxy (``strong_proxy_*`` columns, where a corpus has them).
- ``TuneAhead``: static + probe + dataset-probe + hyperparameter features (:data:`CORPUS_FEATURES`; a corpus
  without the dataset probe's columns is read without them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression

from tuneahead_ray.features import FEATURE_GROUPS
from tuneahead_ray.predictor._curves import extrapolate_loss
from tuneahead_ray.predictor._errors import MetadatasetError
from tuneahead_ray.predictor._metadataset import present_columns, source_of, target_values
from tuneahead_ray.predictor._score_predictor import PredictorConfig, ScorePredictor

__all__ = [
    "DynamicOnly",
    "EarlyStopExtrapolation",
    "FeatureGroupModel",
    "IntervalModel",
    "ProxyLM",
    "ScoreModel",
    "StaticOnly",
    "StrongProxyLM",
    "TrainMean",
    "TuneAhead",
    "corpus_models",
]


@runtime_checkable
class ScoreModel(Protocol):
    """What :func:`cross_validate` evaluates."""

    def fit(self, table: pd.DataFrame, target: str) -> ScoreModel: ...

    def predict(self, table: pd.DataFrame) -> np.ndarray: ...


@runtime_checkable
class IntervalModel(ScoreModel, Protocol):
    """A model that also gives a prediction interval."""

    def predict_interval(self, table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]: ...


class TrainMean:
    """Predicts the training split's mean target for every run."""

    def __init__(self) -> None:
        self.mean = np.nan

    def fit(self, table: pd.DataFrame, target: str) -> TrainMean:
        self.mean = float(target_values(table, target).mean())
        return self

    def predict(self, table: pd.DataFrame) -> np.ndarray:
        return np.full(len(table), self.mean)


class FeatureGroupModel:
    """The TuneAhead regressor (:class:`ScorePredictor`) on the corpus feature groups named by ``groups``."""

    groups: tuple[str, ...] = ()
    extra_features: tuple[str, ...] = ()

    def __init__(self, config: PredictorConfig | None = None) -> None:
        self.config = config
        self.predictor: ScorePredictor | None = None

    def inputs(self, table: pd.DataFrame) -> pd.DataFrame:
        """The table the regressor reads (ProxyLM adds its proxy gain column)."""
        return table

    def fit(self, table: pd.DataFrame, target: str) -> FeatureGroupModel:
        groups = FEATURE_GROUPS
        names = [*self.extra_features, *(name for group in self.groups for name in groups[group])]
        inputs = self.inputs(table)
        features = present_columns(inputs, names, f"{type(self).__name__} feature")
        self.predictor = ScorePredictor(features, self.config).fit(inputs, target)
        return self

    def _fitted(self) -> ScorePredictor:
        if self.predictor is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit() first")
        return self.predictor

    def predict(self, table: pd.DataFrame) -> np.ndarray:
        return self._fitted().predict(self.inputs(table))

    def predict_interval(self, table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return self._fitted().predict_interval(self.inputs(table))


class TuneAhead(FeatureGroupModel):
    """Static descriptors + the candidate's probe + its dataset's standardized probe + hyperparameters."""

    groups = ("static", "probe", "dataset_probe", "hp")


class StaticOnly(FeatureGroupModel):
    """Static dataset descriptors only."""

    groups = ("static",)


class DynamicOnly(FeatureGroupModel):
    """Probe (training-dynamics) features only: the candidate's probe and its dataset's standardized probe."""

    groups = ("probe", "dataset_probe")


class ProxyLM(FeatureGroupModel):
    """The proxy model's fine-tuned score and gain over its base, plus hyperparameter and static features."""

    groups = ("hp", "static")
    #: Column prefix of the proxy's score and base score (``proxy_score``, ``proxy_base_score``).
    proxy = "proxy"

    @property
    def extra_features(self) -> tuple[str, ...]:
        return (f"{self.proxy}_score", f"{self.proxy}_gain")

    def inputs(self, table: pd.DataFrame) -> pd.DataFrame:
        score, base = f"{self.proxy}_score", f"{self.proxy}_base_score"
        for column in (score, base):
            if column not in table.columns:
                raise MetadatasetError(f"{source_of(table)}: {type(self).__name__} needs column {column!r}")
        gain = pd.to_numeric(table[score], errors="coerce") - pd.to_numeric(table[base], errors="coerce")
        return table.assign(**{f"{self.proxy}_gain": gain})


class StrongProxyLM(ProxyLM):
    """ProxyLM on the corpus's strong proxy: larger and pretrained like the target, so more telling than a real
    proxy can be (kept as an extra row so that nothing is hidden)."""

    proxy = "strong_proxy"


class EarlyStopExtrapolation:
    """Extrapolates the probe's loss curve to the last step and maps that loss to a score (isotonic fit).

    Reads ``loss_curve`` (first ``probe_steps`` entries only) and ``total_steps``. A probe too short or broken to
    fit gets the training split's worst extrapolated loss.
    """

    def __init__(self) -> None:
        self.mapping = IsotonicRegression(increasing="auto", out_of_bounds="clip")
        self.worst_loss = np.nan

    @staticmethod
    def extrapolated_losses(table: pd.DataFrame) -> np.ndarray:
        """Each run's probe losses extrapolated to its ``total_steps``."""
        missing = [c for c in ("loss_curve", "probe_steps", "total_steps") if c not in table.columns]
        if missing:
            raise MetadatasetError(f"{source_of(table)}: EarlyStopExtrapolation needs column(s) {', '.join(missing)}")
        runs = zip(table["loss_curve"], table["probe_steps"], table["total_steps"], strict=True)
        return np.array([extrapolate_loss(list(curve)[: int(probe)], int(total)) for curve, probe, total in runs])

    def _filled(self, losses: np.ndarray) -> np.ndarray:
        return np.where(np.isfinite(losses), losses, self.worst_loss)

    def fit(self, table: pd.DataFrame, target: str) -> EarlyStopExtrapolation:
        y = target_values(table, target)
        losses = self.extrapolated_losses(table)
        finite = np.isfinite(losses)
        self.worst_loss = float(losses[finite].max()) if finite.any() else 0.0
        self.mapping.fit(self._filled(losses), y)
        return self

    def predict(self, table: pd.DataFrame) -> np.ndarray:
        return self.mapping.predict(self._filled(self.extrapolated_losses(table)))


def corpus_models(
    config: PredictorConfig | None = None, columns: Sequence[str] | None = None
) -> dict[str, Callable[[], ScoreModel]]:
    """TuneAhead and every baseline, by display name, as factories of unfitted models; given a corpus's
    ``columns``, without the strong-proxy baseline when the corpus has no strong proxy."""
    models = {
        "TuneAhead": lambda: TuneAhead(config),
        "TrainMean": TrainMean,
        "StaticOnly": lambda: StaticOnly(config),
        "DynamicOnly": lambda: DynamicOnly(config),
        "EarlyStopExtrapolation": EarlyStopExtrapolation,
        "ProxyLM": lambda: ProxyLM(config),
        "StrongProxyLM": lambda: StrongProxyLM(config),
    }
    if columns is not None and "strong_proxy_score" not in columns:
        del models["StrongProxyLM"]
    return models
