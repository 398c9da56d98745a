"""Label consistency: prompts that occur more than once with different responses.

Wrong labels are invisible to length, text and duplicate statistics; what they leave behind is disagreement: the same
prompt answered one way in one record and another way in the next. Per row (map_batches side) we keep 64-bit hashes
of the normalised prompt and response (case-folded, whitespace collapsed, so that "Paris" and " paris" agree); per
dataset (driver side) the repeated prompts are grouped with numpy.
"""

from __future__ import annotations

import numpy as np

from ._common import ArrowBatch, column_texts
from ._duplicates import hash64

__all__ = ["conflicting_response_rate", "conflicting_response_rate_of_hashes", "normalised_hashes"]


def normalised_hashes(batch: ArrowBatch, column: str) -> np.ndarray:
    """Per row: 64-bit hash of the case-folded, whitespace-collapsed text of ``column``."""
    return np.array([hash64(" ".join(text.casefold().split())) for text in column_texts(batch, column)], np.uint64)


def conflicting_response_rate_of_hashes(prompt_hashes: np.ndarray, response_hashes: np.ndarray) -> float:
    """Share of the prompts that occur more than once whose responses are not all the same (0 when no prompt
    repeats: nothing to disagree on), from per-row normalised hashes in any order."""
    prompts = np.asarray(prompt_hashes, dtype=np.uint64)
    pairs = np.stack([prompts, np.asarray(response_hashes, dtype=np.uint64)], axis=1)
    unique_prompts, occurrences = np.unique(prompts, return_counts=True)
    repeated = unique_prompts[occurrences > 1]
    if len(repeated) == 0:
        return 0.0
    answered, answers = np.unique(np.unique(pairs, axis=0)[:, 0], return_counts=True)
    conflicting = np.isin(repeated, answered[answers > 1]).sum()
    return float(conflicting / len(repeated))


def conflicting_response_rate(batch: ArrowBatch) -> float:
    """Share of the repeated prompts of a prompt/response batch answered in more than one way."""
    return conflicting_response_rate_of_hashes(normalised_hashes(batch, "prompt"), normalised_hashes(batch, "response"))
