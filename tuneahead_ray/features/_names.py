"""Every feature's name, in the order of the predictor's meta-feature vector, and the descriptors' protocol.

Torch-free on purpose: the predictor, the service and the corpus tools read these names without loading a model.
The packages that compute the features (``descriptors``, ``probe``, ``features.compute``) import them from here.
"""

from __future__ import annotations

__all__ = [
    "CORPUS_FEATURES",
    "DATASET_PROBE_FEATURES",
    "DESCRIPTORS_VERSION",
    "DESCRIPTOR_SAMPLE_SIZE",
    "FEATURE_GROUPS",
    "HP_FEATURES",
    "LENGTH_FEATURES",
    "MODEL_FEATURES",
    "PROBE_FEATURES",
    "ROW_FEATURES",
    "STATIC_FEATURES",
    "dataset_probe_name",
]

#: Bump when any descriptor's definition changes; part of the cache key.
DESCRIPTORS_VERSION = 3
#: Descriptor sample size of the model-based descriptors: the corpus was built with it, so screening uses it too.
DESCRIPTOR_SAMPLE_SIZE = 128

_PARTS = ("prompt", "response", "total")
_STATS = ("mean", "std", "p10", "p50", "p90")
#: Names of the token-length features, in order.
LENGTH_FEATURES: tuple[str, ...] = (
    *(f"{part}_tokens_{stat}" for part in _PARTS for stat in _STATS),
    "io_length_ratio",
)

#: Names of the features reduced from per-row values, in order.
ROW_FEATURES: tuple[str, ...] = (
    "num_rows",
    *LENGTH_FEATURES,
    "special_char_ratio",
    "type_token_ratio",
    "ngram_repetition",
    "prompt_words_mean",
    "instruction_complexity",
    "groundedness",
    "exact_duplicate_rate",
    "near_duplicate_rate",
    "conflicting_response_rate",
)

#: Names of the model-based features, in order.
MODEL_FEATURES: tuple[str, ...] = (
    "embedding_outlier_ratio",
    "io_similarity",
    "reference_log_perplexity",
    "base_answer_match",
    "base_token_agreement",
    "high_loss_share",
)

#: Every static descriptor, in the stable order of the meta-feature vector.
STATIC_FEATURES: tuple[str, ...] = (*ROW_FEATURES, *MODEL_FEATURES)

#: Feature names, in the order the predictor sees them.
PROBE_FEATURES: tuple[str, ...] = (
    "probe_initial_loss",
    "probe_final_loss",
    "probe_loss_slope",
    "probe_decay_ratio",
    "probe_loss_var",
    "probe_grad_norm_mean",
    "probe_grad_norm_var",
    "probe_grad_norm_max",
    "probe_grad_consistency",
    "probe_grad_sparsity",
    "probe_param_change",
    "probe_flatness",
    "probe_heldout_before",
    "probe_heldout_after",
    "probe_heldout_delta",
    "probe_lr_mean",
    "probe_diverged",
    "probe_ref_loss_before",
    "probe_ref_loss_after",
    "probe_ref_loss_delta",
    "probe_ref_match_before",
    "probe_ref_match_after",
    "probe_ref_match_delta",
    "probe_ref_token_acc_delta",
    "probe_ref_transfer",
    "probe_own_ref_gap",
)


def dataset_probe_name(probe_feature: str) -> str:
    """A probe feature as measured by the per-dataset standardized probe: ``probe_x`` -> ``dataset_probe_x``."""
    return f"dataset_{probe_feature}"


#: The per-dataset standardized probe's features (one fixed-hyperparameter LoRA run per dataset, shared by every
#: candidate on it): the probe features but its learning rate, which the protocol fixes.
DATASET_PROBE_FEATURES: tuple[str, ...] = tuple(
    dataset_probe_name(name) for name in PROBE_FEATURES if name != "probe_lr_mean"
)

#: Hyperparameters as features (see :func:`tuneahead_ray.features.hp_features`).
HP_FEATURES: tuple[str, ...] = (
    "hp_log10_lr",
    "hp_lora_r",
    "hp_lora_alpha",
    "hp_lora_scale",
    "hp_lora_dropout",
    "hp_n_target_modules",
    "hp_targets_mlp",
    "hp_batch_size",
    "hp_total_steps",
    "hp_epochs_equiv",
    "hp_warmup_ratio",
    "hp_lr_schedule",
    "hp_weight_decay",
    "hp_max_seq_len",
    "hp_max_grad_norm",
    "hp_log10_lr_integral",
)

#: The corpus's feature names by group: ``static`` descriptors, the candidate's ``probe``, the per-dataset
#: standardized probe (``dataset_probe``), ``hp`` hyperparameters.
FEATURE_GROUPS: dict[str, tuple[str, ...]] = {
    "static": STATIC_FEATURES,
    "probe": PROBE_FEATURES,
    "dataset_probe": DATASET_PROBE_FEATURES,
    "hp": HP_FEATURES,
}
#: Every feature of a corpus row, in order.
CORPUS_FEATURES: tuple[str, ...] = (*STATIC_FEATURES, *PROBE_FEATURES, *DATASET_PROBE_FEATURES, *HP_FEATURES)
