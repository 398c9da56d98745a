"""Ray Tune integration: a trial scheduler that stops the trials the predictor rejects after their probe, and a
LoRA trainable of the embedded model that reports its probe's features, its loss and its final score.

Nothing else in :mod:`tuneahead_ray` imports this package, so Ray Tune loads only when it is used.
"""

from tuneahead_ray.tune._predict import IntervalPredictor, ServePredictor, default_predictor
from tuneahead_ray.tune._scheduler import (
    FEATURES_KEY,
    PredictionCallback,
    TrialPrediction,
    TuneAheadScheduler,
    features_of,
)
from tuneahead_ray.tune._trainable import lora_trainable

__all__ = [
    "FEATURES_KEY",
    "IntervalPredictor",
    "PredictionCallback",
    "ServePredictor",
    "TrialPrediction",
    "TuneAheadScheduler",
    "default_predictor",
    "features_of",
    "lora_trainable",
]
