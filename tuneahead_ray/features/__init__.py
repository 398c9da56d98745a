"""The meta-feature vector's vocabulary: every feature's name, hyperparameter encoding, row identity and the
feature checkpoint's protocol. Torch-free, so the predictor and the service read it without loading a model.

Computing features (descriptors on Ray Data, probes on the actor pool) is :mod:`tuneahead_ray.features.compute`.
"""

from tuneahead_ray.features._checkpoint import (
    FeatureProtocolError,
    feature_protocol,
    open_feature_store,
    protocol_differences,
    protocol_mismatches,
    protocol_path,
    read_protocol,
)
from tuneahead_ray.features._hp import hp_features, lr_integral
from tuneahead_ray.features._names import (
    CORPUS_FEATURES,
    DATASET_PROBE_FEATURES,
    DESCRIPTOR_SAMPLE_SIZE,
    DESCRIPTORS_VERSION,
    FEATURE_GROUPS,
    HP_FEATURES,
    LENGTH_FEATURES,
    MODEL_FEATURES,
    PROBE_FEATURES,
    ROW_FEATURES,
    STATIC_FEATURES,
    dataset_probe_name,
)
from tuneahead_ray.features._rows import candidate_ids, dataset_fingerprints, outcome_columns

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
    "FeatureProtocolError",
    "candidate_ids",
    "dataset_probe_name",
    "dataset_fingerprints",
    "feature_protocol",
    "hp_features",
    "lr_integral",
    "open_feature_store",
    "protocol_differences",
    "protocol_mismatches",
    "protocol_path",
    "read_protocol",
    "outcome_columns",
]
