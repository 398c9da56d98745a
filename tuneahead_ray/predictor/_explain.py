"""SHAP explanations of predictions: per-run top drivers in target units, global importance, and plain-language
diagnostics of what pulls a predicted score down."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import shap
from pydantic import BaseModel, ConfigDict

from tuneahead_ray.predictor._score_predictor import ScorePredictor

__all__ = ["FEATURE_LABELS", "Contribution", "Explainer", "Explanation", "feature_label", "negative_diagnostics"]

#: Human labels of the corpus features used in diagnostics; any other feature is called by its column name.
FEATURE_LABELS: dict[str, str] = {
    "num_rows": "dataset size",
    "prompt_tokens_mean": "mean prompt length (tokens)",
    "response_tokens_mean": "mean response length (tokens)",
    "total_tokens_mean": "mean example length (tokens)",
    "io_length_ratio": "input/output length ratio",
    "special_char_ratio": "special-character ratio",
    "type_token_ratio": "type-token ratio",
    "ngram_repetition": "n-gram repetition",
    "prompt_words_mean": "mean prompt length (words)",
    "instruction_complexity": "instruction complexity",
    "groundedness": "answer groundedness",
    "exact_duplicate_rate": "exact-duplicate rate",
    "near_duplicate_rate": "near-duplicate rate",
    "conflicting_response_rate": "conflicting-response rate",
    "embedding_outlier_ratio": "embedding-outlier ratio",
    "io_similarity": "input/output semantic similarity",
    "reference_log_perplexity": "reference log-perplexity",
    "probe_initial_loss": "probe initial loss",
    "probe_final_loss": "probe final loss",
    "probe_loss_slope": "probe log-loss slope",
    "probe_decay_ratio": "probe loss decay ratio",
    "probe_loss_var": "probe loss variance",
    "probe_grad_norm_mean": "probe gradient-norm mean",
    "probe_grad_norm_var": "probe gradient-norm variance",
    "probe_grad_norm_max": "probe gradient-norm maximum",
    "probe_grad_consistency": "probe gradient consistency",
    "probe_grad_sparsity": "probe gradient sparsity",
    "probe_param_change": "probe parameter change",
    "probe_flatness": "probe loss-landscape sharpness",
    "probe_heldout_before": "held-out loss before the probe",
    "probe_heldout_after": "held-out loss after the probe",
    "probe_heldout_delta": "held-out loss change over the probe",
    "probe_lr_mean": "probe mean learning rate",
    "probe_diverged": "probe divergence",
    "hp_log10_lr": "log10 learning rate",
    "hp_lora_r": "LoRA rank",
    "hp_lora_alpha": "LoRA alpha",
    "hp_lora_scale": "LoRA alpha/rank",
    "hp_lora_dropout": "LoRA dropout",
    "hp_n_target_modules": "share of LoRA target modules",
    "hp_targets_mlp": "LoRA on MLP layers",
    "hp_batch_size": "batch size",
    "hp_total_steps": "training steps",
    "hp_epochs_equiv": "epochs",
    "hp_warmup_ratio": "warmup ratio",
    "hp_lr_schedule": "learning-rate schedule",
    "hp_weight_decay": "weight decay",
    "hp_max_seq_len": "max sequence length",
    "hp_max_grad_norm": "gradient clipping norm",
}
#: The additivity check's tolerance: |sum(SHAP) + base value - prediction| above this is an error.
ADDITIVITY_TOLERANCE = 1e-6


def feature_label(name: str) -> str:
    """The human label of a feature, or its column name."""
    return FEATURE_LABELS.get(name, name)


class Contribution(BaseModel):
    """One feature's SHAP contribution to one prediction, in target units."""

    model_config = ConfigDict(frozen=True, ser_json_inf_nan="constants")

    feature: str
    label: str
    value: float
    contribution: float


class Explanation(BaseModel):
    """One prediction: base value + the sum of all contributions = prediction; ``top`` has the largest |ones|."""

    model_config = ConfigDict(frozen=True, ser_json_inf_nan="constants")

    prediction: float
    base_value: float
    top: list[Contribution]
    additivity_error: float
    diagnostics: list[str]


def _format_value(value: float) -> str:
    return "missing" if math.isnan(value) else f"{value:.3g}"


def negative_diagnostics(
    contributions: list[Contribution], count: int = 3, target: str = "score", unit: str = "pp"
) -> list[str]:
    """Sentences for the ``count`` most negative contributions, strongest first, e.g.
    "near-duplicate rate 0.41 lowers the predicted score by 3.2pp"."""
    negative = sorted((c for c in contributions if c.contribution < 0), key=lambda c: c.contribution)[:count]
    return [
        f"{c.label} {_format_value(c.value)} lowers the predicted {target} by {-c.contribution:.1f}{unit}"
        for c in negative
    ]


class Explainer:
    """SHAP ``TreeExplainer`` on a fitted predictor's booster."""

    def __init__(self, predictor: ScorePredictor, unit: str = "pp") -> None:
        if predictor.booster is None:
            raise RuntimeError("the predictor is not fitted: call fit() first")
        self.predictor = predictor
        self.unit = unit
        self.tree_explainer = shap.TreeExplainer(predictor.booster)
        self.base_value = float(np.ravel(self.tree_explainer.expected_value)[0])

    def shap_values(self, table: pd.DataFrame) -> np.ndarray:
        """SHAP values, one row per run and one column per feature (in ``predictor.features`` order)."""
        return np.asarray(self.tree_explainer.shap_values(self.predictor.matrix(table)), dtype=float)

    def global_importance(self, table: pd.DataFrame) -> dict[str, float]:
        """Mean |SHAP| per feature over ``table``, largest first."""
        importance = np.abs(self.shap_values(table)).mean(axis=0)
        order = np.argsort(-importance, kind="stable")
        return {self.predictor.features[i]: float(importance[i]) for i in order}

    def explain(self, table: pd.DataFrame, top_k: int = 5, diagnostics: int = 3) -> list[Explanation]:
        """Per run: the ``top_k`` drivers by |contribution|, and diagnostics of the strongest negative ones.

        Raises if SHAP's values do not add up to the booster's prediction (``ADDITIVITY_TOLERANCE``).
        """
        x = self.predictor.matrix(table)
        values = np.asarray(self.tree_explainer.shap_values(x), dtype=float)
        predictions = self.predictor.booster.predict(x)
        errors = np.abs(values.sum(axis=1) + self.base_value - predictions)
        if errors.size and errors.max() > ADDITIVITY_TOLERANCE * max(1.0, float(np.abs(predictions).max())):
            raise RuntimeError(f"SHAP values do not add up to the prediction (error {errors.max():.3g})")
        explanations = []
        for row, prediction, error in zip(range(len(x)), predictions, errors, strict=True):
            contributions = [
                Contribution(feature=name, label=feature_label(name), value=x[row, j], contribution=values[row, j])
                for j, name in enumerate(self.predictor.features)
            ]
            ranked = sorted(contributions, key=lambda c: -abs(c.contribution))
            explanations.append(
                Explanation(
                    prediction=float(prediction),
                    base_value=self.base_value,
                    top=ranked[:top_k],
                    additivity_error=float(error),
                    diagnostics=negative_diagnostics(contributions, diagnostics, self.predictor.target, self.unit),
                )
            )
        return explanations
