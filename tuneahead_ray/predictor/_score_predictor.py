"""The TuneAhead score predictor: LightGBM regression, early-stopped, with a conformal prediction interval."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Annotated, Literal

import lightgbm as lgb
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from sklearn.model_selection import GroupKFold, GroupShuffleSplit, KFold, ShuffleSplit

from tuneahead_ray.features import FEATURE_GROUPS
from tuneahead_ray.predictor._conformal import ConformalInterval, conformal_quantile
from tuneahead_ray.predictor._errors import MetadatasetError
from tuneahead_ray.predictor._metadataset import feature_columns, feature_matrix, source_of, table_sha256, target_values
from tuneahead_ray.predictor._novelty import NoveltyBins, NoveltyScore, calibrate_novelty

__all__ = ["MIN_TRAINING_ROWS", "PredictorConfig", "ScorePredictor"]

#: Fewer training rows than this cannot be split into training and calibration parts meaningfully.
MIN_TRAINING_ROWS = 10
#: Fewest training runs whose probe diverged for their scores to stand in for a probe that went non-finite.
MIN_DIVERGED_RUNS = 5
_DATASET_PARAMS = {"verbosity": -1, "feature_pre_filter": False}
Split = tuple[np.ndarray, np.ndarray]
TunableParam = Literal[
    "num_leaves", "learning_rate", "min_child_samples", "feature_fraction", "bagging_fraction", "lambda_l2"
]
NoveltyGroup = Literal["static", "probe", "dataset_probe", "hp"]


class PredictorConfig(BaseModel):
    """LightGBM parameters sized for metadatasets of hundreds to a few thousand runs, and the interval method."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    num_leaves: int = Field(15, ge=2, le=1024, description="leaves per tree; few for small metadatasets")
    learning_rate: float = Field(0.03, gt=0, le=1, description="shrinkage per boosting round")
    min_child_samples: int = Field(10, ge=1, description="fewest training rows in a leaf")
    feature_fraction: float = Field(0.8, gt=0, le=1, description="share of features each tree may use")
    bagging_fraction: float = Field(0.8, gt=0, le=1, description="share of rows each tree sees (resampled per tree)")
    lambda_l2: float = Field(1.0, ge=0, description="L2 penalty on leaf values")
    max_rounds: int = Field(2000, ge=1, description="boosting rounds before early stopping")
    early_stopping_rounds: int = Field(100, ge=1, description="rounds without validation improvement before stopping")
    interval_method: Literal["cv", "cv-normalized", "split"] = Field(
        "cv",
        description="cv: K-fold cross-fitting picks the rounds and gives out-of-fold residuals for every row, the "
        "final model is refit on all rows; cv-normalized: the same, with residuals divided by a cross-fitted "
        "model of |residual| (intervals adapt per run); split: one validation split early-stops and calibrates",
    )
    level: float = Field(0.9, gt=0, lt=1, description="coverage level of the prediction interval")
    novelty: bool = Field(
        True,
        description="score how far each candidate lies from the training runs, and widen the intervals of those "
        "beyond the usual distance (Mondrian conformal by novelty, calibrated on clusters of runs held out)",
    )
    novelty_widen_from: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="quantile of in-sample novelty beyond which intervals widen by novelty bin (default: the "
        "`level` quantile, beyond which candidates are flagged novel); a lower one widens more runs a little "
        "unlike the corpus, at a cost in width on runs like it",
    )
    novelty_groups: tuple[NoveltyGroup, ...] = Field(
        ("static", "dataset_probe"),
        min_length=1,
        description="feature groups novelty is measured on (those of the features the predictor has; every "
        "feature when it has none of them): by default what describes the dataset, its static descriptors and "
        "dataset probe, not the hyperparameters a grid varies by design",
    )
    folds: int = Field(5, ge=2, description="folds of the cv interval method")
    valid_fraction: float = Field(0.2, gt=0, lt=1, description="validation share of the split method and of SHAP")
    group: str | None = Field(
        None,
        description="column whose values stay together in inner folds and splits (e.g. family_group), so rounds "
        "and intervals are calibrated on unseen groups",
    )
    shap_top_k: int | None = Field(
        None,
        ge=1,
        description="keep the k features of largest mean |SHAP| when that lowers RMSE on an inner validation split",
    )
    search_space: dict[TunableParam, Annotated[list[int | float], Field(min_length=1)]] = Field(
        default_factory=dict,
        description="values to try per parameter; the combination of lowest inner-fold loss is used (tuned on "
        "the training rows only)",
    )
    monotone: dict[str, Literal[-1, 0, 1]] = Field(
        default_factory=dict, description="feature -> +1 (score rises with it) or -1 (falls); others unconstrained"
    )
    seed: int = Field(0, description="seed of the inner splits and of LightGBM's sampling")
    n_jobs: int = Field(1, description="LightGBM threads (<= 0: OpenMP's default); small tables train fastest on 1")


def novelty_columns(features: Sequence[str], config: PredictorConfig) -> list[int] | None:
    """Indices of ``features`` in ``config.novelty_groups`` (``None``, every feature, when there are none)."""
    chosen = {name for group in config.novelty_groups for name in FEATURE_GROUPS[group]}
    columns = [i for i, name in enumerate(features) if name in chosen]
    return columns or None


def lightgbm_params(config: PredictorConfig, features: Sequence[str]) -> dict:
    """LightGBM ``train`` parameters for ``config``; deterministic for a given seed and thread count."""
    params = {
        "objective": "regression",
        "metric": "l2",
        "num_leaves": config.num_leaves,
        "learning_rate": config.learning_rate,
        "min_data_in_leaf": config.min_child_samples,
        "feature_fraction": config.feature_fraction,
        "bagging_fraction": config.bagging_fraction,
        "bagging_freq": 1,
        "lambda_l2": config.lambda_l2,
        "seed": config.seed,
        "deterministic": True,
        "force_col_wise": True,
        "num_threads": max(config.n_jobs, 0),
        "verbosity": -1,
    }
    if config.monotone:
        params["monotone_constraints"] = [config.monotone.get(name, 0) for name in features]
    return params


def _dataset(x: np.ndarray, y: np.ndarray) -> lgb.Dataset:
    # Positional feature names: LightGBM rejects some characters in names, and the card keeps the real ones.
    return lgb.Dataset(x, y, params=_DATASET_PARAMS, free_raw_data=False)


def _groups(table: pd.DataFrame, config: PredictorConfig) -> np.ndarray | None:
    if config.group is None:
        return None
    if config.group not in table.columns:
        raise MetadatasetError(f"{source_of(table)}: no group column {config.group!r}")
    groups = table[config.group].to_numpy()
    return groups if len(np.unique(groups)) >= 2 else None


def inner_folds(n: int, groups: np.ndarray | None, folds: int, seed: int) -> list[Split]:
    """K folds of ``n`` rows: grouped (at most one fold per group) when ``groups`` is given, else shuffled."""
    if groups is not None:
        splitter = GroupKFold(min(folds, len(np.unique(groups))))
        return list(splitter.split(np.zeros(n), groups=groups))
    return list(KFold(folds, shuffle=True, random_state=seed).split(np.zeros(n)))


def inner_split(n: int, groups: np.ndarray | None, fraction: float, seed: int) -> Split:
    """One (train, validation) split of ``n`` rows, grouped when ``groups`` is given."""
    if groups is not None:
        return next(GroupShuffleSplit(1, test_size=fraction, random_state=seed).split(np.zeros(n), groups=groups))
    return next(ShuffleSplit(1, test_size=fraction, random_state=seed).split(np.zeros(n)))


def train_early_stopped(
    x: np.ndarray, y: np.ndarray, split: Split, params: dict, config: PredictorConfig
) -> lgb.Booster:
    """A booster trained on ``split[0]``, early-stopped on ``split[1]``, cut to its best round."""
    train, valid = split
    booster = lgb.train(
        params,
        _dataset(x[train], y[train]),
        num_boost_round=config.max_rounds,
        valid_sets=[_dataset(x[valid], y[valid])],
        callbacks=[lgb.early_stopping(config.early_stopping_rounds, verbose=False)],
    )
    return lgb.Booster(model_str=booster.model_to_string(num_iteration=booster.best_iteration))


def _fit_cross(
    x: np.ndarray, y: np.ndarray, folds: list[Split], params: dict, config: PredictorConfig
) -> tuple[lgb.Booster, np.ndarray]:
    """Cross-fitting: rounds chosen on the mean fold loss, out-of-fold residuals, a final model on all rows."""
    result = lgb.cv(
        params,
        _dataset(x, y),
        num_boost_round=config.max_rounds,
        folds=folds,
        callbacks=[lgb.early_stopping(config.early_stopping_rounds, verbose=False)],
        return_cvbooster=True,
    )
    cv_booster = result["cvbooster"]
    rounds = cv_booster.best_iteration
    out_of_fold = np.empty_like(y)
    for (_, valid), booster in zip(folds, cv_booster.boosters, strict=True):
        out_of_fold[valid] = booster.predict(x[valid], num_iteration=rounds)
    final = lgb.train(params, _dataset(x, y), num_boost_round=rounds)
    return final, y - out_of_fold


def tune(
    x: np.ndarray, y: np.ndarray, folds: list[Split], features: list[str], config: PredictorConfig
) -> tuple[PredictorConfig, dict[str, float]]:
    """The ``search_space`` combination of lowest mean validation loss over ``folds`` (each early-stopped)."""
    names = sorted(config.search_space)
    best: tuple[float, PredictorConfig, dict[str, float]] | None = None
    for values in itertools.product(*(config.search_space[name] for name in names)):
        choice = dict(zip(names, values, strict=True))
        candidate = PredictorConfig.model_validate({**config.model_dump(), **choice})
        result = lgb.cv(
            lightgbm_params(candidate, features),
            _dataset(x, y),
            num_boost_round=candidate.max_rounds,
            folds=folds,
            callbacks=[lgb.early_stopping(candidate.early_stopping_rounds, verbose=False)],
        )
        loss = float(np.min(result["valid l2-mean"]))
        if best is None or loss < best[0]:
            best = (loss, candidate, choice)
    assert best is not None  # every parameter has at least one value (validated)
    return best[1], {f"tuned_{name}": value for name, value in best[2].items()}


def _fit_scale(
    x: np.ndarray, residuals: np.ndarray, folds: list[Split], params: dict, config: PredictorConfig
) -> tuple[lgb.Booster, np.ndarray, float]:
    """A cross-fitted model of |residual|: its final booster, out-of-fold scales, and a floor for them
    (a tenth of the mean |residual|) so that a near-zero predicted scale cannot shrink an interval to nothing."""
    spread = np.abs(residuals)
    booster, spread_residuals = _fit_cross(x, spread, folds, params, config)
    floor = max(0.1 * float(spread.mean()), 1e-12)
    return booster, np.maximum(spread - spread_residuals, floor), floor


def _fit_split(
    x: np.ndarray, y: np.ndarray, split: Split, params: dict, config: PredictorConfig
) -> tuple[lgb.Booster, np.ndarray]:
    """Split conformal: one booster early-stopped on the validation rows, whose residuals calibrate the interval."""
    booster = train_early_stopped(x, y, split, params, config)
    valid = split[1]
    return booster, y[valid] - booster.predict(x[valid])


def _fit_with_interval(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray | None,
    folds: list[Split],
    features: list[str],
    config: PredictorConfig,
) -> tuple[lgb.Booster, np.ndarray, ConformalInterval, list[Split]]:
    """The final booster, its calibration residuals, the conformal interval of ``config.interval_method`` and the
    splits whose validation rows the residuals are of (all rows for the cv methods, in row order)."""
    params = lightgbm_params(config, features)
    if config.interval_method == "split":
        split = inner_split(len(y), groups, config.valid_fraction, config.seed)
        booster, residuals = _fit_split(x, y, split, params, config)
        interval = ConformalInterval(config.level, conformal_quantile(residuals, config.level))
        return booster, residuals, interval, [split]
    booster, residuals = _fit_cross(x, y, folds, params, config)
    if config.interval_method == "cv":
        return booster, residuals, ConformalInterval(config.level, conformal_quantile(residuals, config.level)), folds
    unconstrained = {k: v for k, v in params.items() if k != "monotone_constraints"}
    scale, scales, floor = _fit_scale(x, residuals, folds, unconstrained, config)
    interval = ConformalInterval(config.level, conformal_quantile(residuals / scales, config.level), scale, floor)
    return booster, residuals, interval, folds


def diverged_probe_outcome(table: pd.DataFrame, y: np.ndarray, features: Sequence[str], level: float) -> dict:
    """What the training runs whose probe diverged scored: their mean and the half-width around it that holds the
    central ``level`` share of them (metrics keys ``diverged_probe_*``); empty with fewer than MIN_DIVERGED_RUNS
    of them, without a ``probe_diverged`` feature, or when the training probes had NaN features (the trees then
    learnt what NaN means)."""
    probe_columns = [name for name in features if name.startswith("probe_")]
    if "probe_diverged" not in features or table[probe_columns].isna().to_numpy().any():
        return {}
    scores = y[table["probe_diverged"].to_numpy(dtype=float) == 1]
    if len(scores) < MIN_DIVERGED_RUNS:
        return {}
    mean = float(np.mean(scores))
    low, high = np.quantile(scores, [(1 - level) / 2, (1 + level) / 2])
    return {
        "diverged_probe_runs": len(scores),
        "diverged_probe_score": mean,
        "diverged_probe_half_width": float(max(mean - low, high - mean)),
    }


def _rmse(y: np.ndarray, prediction: np.ndarray) -> float:
    return float(np.sqrt(np.mean((y - prediction) ** 2)))


def mean_abs_shap(booster: lgb.Booster, x: np.ndarray) -> np.ndarray:
    """Mean |SHAP value| per feature (LightGBM's exact TreeSHAP contributions, bias column dropped)."""
    return np.abs(booster.predict(x, pred_contrib=True)[:, :-1]).mean(axis=0)


def select_by_shap(
    x: np.ndarray, y: np.ndarray, features: list[str], groups: np.ndarray | None, config: PredictorConfig
) -> tuple[list[int], dict[str, float]]:
    """Column indices to keep: the ``shap_top_k`` of largest mean |SHAP| if they beat all features on an inner
    validation split (importance is measured on the inner training rows only), else all of them."""
    split = inner_split(len(y), groups, config.valid_fraction, config.seed)
    train, valid = split
    everything = train_early_stopped(x, y, split, lightgbm_params(config, features), config)
    top = sorted(np.argsort(-mean_abs_shap(everything, x[train]))[: config.shap_top_k].tolist())
    subset = [features[i] for i in top]
    reduced = train_early_stopped(x[:, top], y, split, lightgbm_params(config, subset), config)
    rmse_all = _rmse(y[valid], everything.predict(x[valid]))
    rmse_top = _rmse(y[valid], reduced.predict(x[valid][:, top]))
    kept = top if rmse_top < rmse_all else list(range(len(features)))
    return kept, {"inner_rmse_all_features": rmse_all, "inner_rmse_top_k": rmse_top, "features_kept": len(kept)}


class ScorePredictor:
    """LightGBM regressor of a run's score from its meta-features, with a conformal interval at ``config.level``.

    ``features=None`` takes every numeric column of the training table (see :func:`feature_columns`).
    """

    def __init__(self, features: Sequence[str] | None = None, config: PredictorConfig | None = None) -> None:
        if features is not None and not features:
            raise ValueError("features: give at least one column, or None for every numeric column")
        self.config = config or PredictorConfig()
        self.requested_features = list(features) if features is not None else None
        self.features: list[str] = []
        self.target = ""
        self.booster: lgb.Booster | None = None
        self.interval: ConformalInterval | None = None
        self.metrics: dict[str, float | int | str] = {}
        self.training_sha256 = ""
        self.novelty: NoveltyScore | None = None
        self.novelty_bins: NoveltyBins | None = None

    @classmethod
    def restore(
        cls,
        booster: lgb.Booster,
        *,
        features: list[str],
        target: str,
        interval: ConformalInterval,
        config: PredictorConfig,
        metrics: dict,
        training_sha256: str,
        novelty: tuple[NoveltyScore, NoveltyBins] | None = None,
    ) -> ScorePredictor:
        """A fitted predictor from saved parts (see :func:`load_predictor`)."""
        predictor = cls(features, config)
        predictor.features, predictor.target, predictor.booster = list(features), target, booster
        predictor.interval, predictor.metrics, predictor.training_sha256 = interval, dict(metrics), training_sha256
        if novelty is not None:
            predictor.novelty, predictor.novelty_bins = novelty
        return predictor

    def fit(self, table: pd.DataFrame, target: str) -> ScorePredictor:
        config = self.config
        y = target_values(table, target)
        if len(y) < MIN_TRAINING_ROWS:
            raise MetadatasetError(f"{source_of(table)}: {len(y)} rows; training needs at least {MIN_TRAINING_ROWS}")
        features = self.requested_features if self.requested_features is not None else feature_columns(table, target)
        unknown = sorted(set(config.monotone) - set(features))
        if unknown:
            raise MetadatasetError(f"monotone constraint on non-feature column(s) {', '.join(map(repr, unknown))}")
        x = feature_matrix(table, features)
        self.training_sha256 = table_sha256(table, [*features, target])
        groups = _groups(table, config)
        details: dict[str, float] = {}
        if config.shap_top_k is not None and config.shap_top_k < len(features):
            kept, details = select_by_shap(x, y, features, groups, config)
            features, x = [features[i] for i in kept], x[:, kept]
        folds = inner_folds(len(y), groups, config.folds, config.seed)
        if config.search_space:
            config, tuned = tune(x, y, folds, features, config)
            details.update(tuned)
        booster, residuals, self.interval, splits = _fit_with_interval(x, y, groups, folds, features, config)
        self.features, self.target, self.booster = features, target, booster
        self.novelty = self.novelty_bins = None
        if config.novelty:
            out_of_fold = np.full(len(y), np.nan)
            out_of_fold[np.concatenate([valid for _, valid in splits])] = residuals
            self.novelty, self.novelty_bins = calibrate_novelty(
                x, y, out_of_fold, splits, lightgbm_params(config, features), booster.current_iteration(),
                config.level, config.seed, config.novelty_widen_from, novelty_columns(features, config),
            )  # fmt: skip
            details["novelty_threshold"] = self.novelty_bins.flag
            details["novelty_widen_threshold"] = self.novelty_bins.threshold
        self.metrics = {
            "n_train": len(y),
            "rounds": booster.current_iteration(),
            "calibration_rows": len(residuals),
            "calibration_rmse": float(np.sqrt(np.mean(residuals**2))),
            "interval_quantile": self.interval.quantile,
            **diverged_probe_outcome(table, y, features, config.level),
            **details,
        }
        return self

    def _fitted(self) -> tuple[lgb.Booster, ConformalInterval]:
        if self.booster is None or self.interval is None:
            raise RuntimeError("the predictor is not fitted: call fit() first")
        return self.booster, self.interval

    def matrix(self, table: pd.DataFrame) -> np.ndarray:
        """The model's input matrix for ``table`` (columns in the training order)."""
        return feature_matrix(table, self.features)

    def predict(self, table: pd.DataFrame) -> np.ndarray:
        """Predicted target per row."""
        return self.predict_matrix(self.matrix(table))

    def non_finite_probes(self, x: np.ndarray) -> np.ndarray:
        """Input rows whose probe diverged with NaN features (stopped at a NaN/inf loss or gradient) when no
        training probe had NaN: the trees would read those NaN as zeros (a perfect loss). Such rows are predicted
        from the training runs whose probe diverged instead."""
        if "diverged_probe_score" not in self.metrics:
            return np.zeros(len(x), dtype=bool)
        probe = [i for i, name in enumerate(self.features) if name.startswith("probe_")]
        diverged = x[:, self.features.index("probe_diverged")] == 1
        return diverged & np.isnan(x[:, probe]).any(axis=1)

    def predict_matrix(self, x: np.ndarray, **predict_params) -> np.ndarray:
        """Predicted target per input row (see :meth:`matrix`; ``predict_params`` go to LightGBM's ``predict``); a
        non-finite probe (:meth:`non_finite_probes`) takes the mean score of the training runs whose probe diverged."""
        prediction = np.asarray(self._fitted()[0].predict(x, **predict_params), dtype=float)
        prediction[self.non_finite_probes(x)] = self.metrics.get("diverged_probe_score", np.nan)
        return prediction

    def half_widths(self, x: np.ndarray, novelty: np.ndarray | None = None, **predict_params) -> np.ndarray:
        """Interval half-widths at input rows ``x``: the conformal interval's, widened by novelty where the
        predictor scores novelty (``novelty``: the rows' scores when already computed), and at least the spread
        of the diverged training runs for a non-finite probe; ``predict_params`` go to LightGBM's ``predict``."""
        half_widths = self._fitted()[1].half_widths(x, **predict_params)
        if self.novelty is not None and self.novelty_bins is not None:
            novelty = self.novelty.score(x) if novelty is None else novelty
            half_widths = np.maximum(half_widths, self.novelty_bins.half_widths(novelty))
        non_finite = self.non_finite_probes(x)
        if non_finite.any():
            spread = float(self.metrics["diverged_probe_half_width"])
            half_widths = np.where(non_finite, np.maximum(half_widths, spread), half_widths)
        return half_widths

    def predict_interval(self, table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper ends of the ``config.level`` prediction interval per row."""
        x = self.matrix(table)
        prediction, half_widths = self.predict_matrix(x), self.half_widths(x)
        return prediction - half_widths, prediction + half_widths

    def novelty_of(self, x: np.ndarray, top: int = 3) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
        """Per input row: its novelty (NaN when the predictor scores none), whether it lies beyond the usual
        distance from the training runs (where intervals widen), and up to ``top`` features beyond their range."""
        if self.novelty is None or self.novelty_bins is None:
            return np.full(len(x), np.nan), np.zeros(len(x), dtype=bool), [[] for _ in range(len(x))]
        novelty, drivers = self.novelty.assess(x, self.features, top)
        return novelty, novelty > self.novelty_bins.flag, drivers
