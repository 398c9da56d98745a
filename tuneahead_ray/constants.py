"""The words the pipeline decides and reports in, defined once: decisions, go/no-go policies and stage names.

Foundation layer: this module imports nothing from the package, so every layer may use it.
"""

from __future__ import annotations

from enum import Enum

__all__ = [
    "BUDGETED_POLICIES",
    "DECISIONS",
    "FAILED",
    "GO",
    "NOT_PROBED",
    "NO_GO",
    "PROBED",
    "PROGRESS_STAGES",
    "ROW_STAGES",
    "STAGE_DATASET_PROBES",
    "STAGE_DESCRIPTORS",
    "STAGE_PROBES",
    "THRESHOLD_POLICIES",
    "Policy",
]

#: A candidate's decision: train it (GO) or not (NO-GO).
GO, NO_GO = "GO", "NO-GO"
DECISIONS = (GO, NO_GO)


class Policy(str, Enum):
    """How the GO set is chosen (see :mod:`tuneahead_ray.screening`'s ``select``). A member is its name as a string:
    it equals, hashes, formats and serialises as its value (``f"{Policy.TOP_K}"`` is ``top_k`` on every Python)."""

    THRESHOLD = "threshold"
    TOP_K = "top_k"
    EXPECTED_GAIN = "expected_gain"
    SUCCESS_PROBABILITY = "success_probability"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def names(cls) -> list[str]:
        """Every policy's name, in definition order (the CLI's choices)."""
        return [policy.value for policy in cls]


#: The policies that choose within a compute budget (greedy knapsacks): they need a budget.
BUDGETED_POLICIES = frozenset({Policy.EXPECTED_GAIN, Policy.SUCCESS_PROBABILITY})
#: The policies that read a success threshold: they need one.
THRESHOLD_POLICIES = frozenset({Policy.THRESHOLD, Policy.SUCCESS_PROBABILITY})

#: Pipeline stages, as named to ``on_progress(stage, done, total)`` callbacks and in a screening's timings.
STAGE_DESCRIPTORS, STAGE_DATASET_PROBES, STAGE_PROBES = "descriptors", "dataset probes", "probes"
PROGRESS_STAGES = (STAGE_DESCRIPTORS, STAGE_DATASET_PROBES, STAGE_PROBES)

#: Where a screened candidate ended up (the ``stage`` column): probed, its probe failed, or left out by the
#: probe budget.
PROBED, FAILED, NOT_PROBED = "probed", "failed", "not_probed"
ROW_STAGES = (PROBED, FAILED, NOT_PROBED)
