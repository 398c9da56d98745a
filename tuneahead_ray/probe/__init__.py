"""The probe: the candidate's own first K LoRA steps, its trajectory features, and the per-GPU actor pool."""

from tuneahead_ray.probe._features import PROBE_FEATURES, trajectory_features
from tuneahead_ray.probe._pool import ProbePool
from tuneahead_ray.probe._probe import ProbeTrace, run_probe
from tuneahead_ray.probe._spec import ProbeSpec
from tuneahead_ray.probe._worker import PROBE_LOSSES_FILE, ProbeResult, ProbeWorker

__all__ = [
    "PROBE_FEATURES",
    "PROBE_LOSSES_FILE",
    "ProbePool",
    "ProbeResult",
    "ProbeSpec",
    "ProbeTrace",
    "ProbeWorker",
    "run_probe",
    "trajectory_features",
]
