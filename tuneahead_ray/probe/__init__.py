"""The probe: the candidate's own first K LoRA steps, its trajectory features, the base-model worker that runs
probes and whole runs, and the per-GPU actor pool."""

from tuneahead_ray.probe._base_scores import BaseScores
from tuneahead_ray.probe._features import PROBE_FEATURES, trajectory_features
from tuneahead_ray.probe._pool import ProbePool
from tuneahead_ray.probe._probe import ProbeTrace, run_probe
from tuneahead_ray.probe._reference import REFERENCE_SEED, ReferenceScore, encode_reference, score_reference
from tuneahead_ray.probe._spec import DATASET_PROBE_HP, DatasetProbeSpec, ProbeSpec
from tuneahead_ray.probe._worker import PROBE_LOSSES_FILE, ProbeResult, RunWorker, full_run

__all__ = [
    "BaseScores",
    "DATASET_PROBE_HP",
    "DatasetProbeSpec",
    "PROBE_FEATURES",
    "PROBE_LOSSES_FILE",
    "REFERENCE_SEED",
    "ProbePool",
    "ProbeResult",
    "ProbeSpec",
    "ProbeTrace",
    "RunWorker",
    "ReferenceScore",
    "encode_reference",
    "full_run",
    "run_probe",
    "score_reference",
    "trajectory_features",
]
