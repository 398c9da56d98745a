"""The score predictor: LightGBM on meta-features with conformal intervals, SHAP explanations, a verified model
store, the paper's baselines and the held-out evaluation that compares them.

The feature names it reads (``CORPUS_FEATURES``, ``FEATURE_GROUPS``) are :mod:`tuneahead_ray.features`'.
"""

from tuneahead_ray.predictor._baselines import (
    DynamicOnly,
    EarlyStopExtrapolation,
    FeatureGroupModel,
    IntervalModel,
    ProxyLM,
    ScoreModel,
    StaticOnly,
    TrainMean,
    TuneAhead,
    corpus_models,
)
from tuneahead_ray.predictor._conformal import ConformalInterval, conformal_quantile, interval_coverage
from tuneahead_ray.predictor._curves import PowerLaw, extrapolate_loss, fit_power_law
from tuneahead_ray.predictor._default import (
    DEFAULT_TARGET,
    FULL_GROUPS,
    PRESCREEN_GROUPS,
    default_corpus_path,
    default_predictor_dir,
    ensure_default_predictor,
)
from tuneahead_ray.predictor._errors import MetadatasetError, ModelStoreError
from tuneahead_ray.predictor._evaluate import (
    WITHIN_PP,
    cross_validate,
    default_models,
    evaluation_splits,
    go_no_go,
    regression_metrics,
)
from tuneahead_ray.predictor._explain import (
    FEATURE_LABELS,
    Contribution,
    Explainer,
    Explanation,
    feature_label,
    negative_diagnostics,
)
from tuneahead_ray.predictor._metadataset import (
    CORPUS_EXCLUDED,
    feature_columns,
    feature_matrix,
    load_metadataset,
    present_columns,
    table_sha256,
    target_values,
)
from tuneahead_ray.predictor._score_predictor import MIN_TRAINING_ROWS, PredictorConfig, ScorePredictor
from tuneahead_ray.predictor._store import (
    CARD_FILE,
    CARD_VERSION,
    MODEL_FILE,
    NOVELTY_FILE,
    SCALE_FILE,
    IntervalCard,
    ModelCard,
    NoveltyCard,
    load_predictor,
    read_card,
    save_predictor,
)

__all__ = [
    "CARD_FILE",
    "CARD_VERSION",
    "CORPUS_EXCLUDED",
    "DEFAULT_TARGET",
    "FEATURE_LABELS",
    "FULL_GROUPS",
    "MIN_TRAINING_ROWS",
    "MODEL_FILE",
    "NOVELTY_FILE",
    "PRESCREEN_GROUPS",
    "SCALE_FILE",
    "WITHIN_PP",
    "ConformalInterval",
    "Contribution",
    "DynamicOnly",
    "EarlyStopExtrapolation",
    "Explainer",
    "Explanation",
    "FeatureGroupModel",
    "IntervalCard",
    "IntervalModel",
    "MetadatasetError",
    "ModelCard",
    "NoveltyCard",
    "ModelStoreError",
    "PowerLaw",
    "PredictorConfig",
    "ProxyLM",
    "ScoreModel",
    "ScorePredictor",
    "StaticOnly",
    "TrainMean",
    "TuneAhead",
    "conformal_quantile",
    "corpus_models",
    "cross_validate",
    "default_corpus_path",
    "default_models",
    "default_predictor_dir",
    "ensure_default_predictor",
    "evaluation_splits",
    "extrapolate_loss",
    "feature_columns",
    "feature_label",
    "feature_matrix",
    "fit_power_law",
    "go_no_go",
    "interval_coverage",
    "load_metadataset",
    "load_predictor",
    "negative_diagnostics",
    "present_columns",
    "read_card",
    "regression_metrics",
    "save_predictor",
    "table_sha256",
    "target_values",
]
