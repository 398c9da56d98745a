"""What the untouched base model scores, measured once per worker and shared by every candidate's probe.

A fresh LoRA adapter is the identity (its B matrix starts at zero), so before its first step a candidate's model
computes exactly what the base model computes. The probe's "before" measurements (held-out rows of the
candidate's data, the reference set) therefore depend only on the data, never on the candidate's
hyperparameters: a worker that probes many candidates on the same datasets measures each row once.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import torch

from tuneahead_ray.probe._reference import ReferenceScore, score_reference
from tuneahead_ray.training import EncodedPairs, score_rows

__all__ = ["BaseScores", "answer_loss_sums", "is_identity_adapter", "mean_answer_loss"]


def answer_loss_sums(
    model: torch.nn.Module, pairs: EncodedPairs, indices: Sequence[int], pad_id: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per row, in eval mode: the summed cross-entropy over its answer tokens and the number of answer tokens.

    Per-row sums let scores measured in different batches be pooled exactly as one batch's token-weighted mean
    loss would pool them.
    """
    scores = score_rows(model, pairs, indices, pad_id)
    return scores.loss_sums.double().numpy(), scores.counts.numpy()


def mean_answer_loss(sums: np.ndarray, counts: np.ndarray) -> float:
    """Token-weighted mean answer loss of rows scored by :func:`answer_loss_sums` (NaN without answer tokens)."""
    total = int(np.sum(counts))
    return float(np.sum(sums) / total) if total else float("nan")


def is_identity_adapter(model: torch.nn.Module) -> bool:
    """Does ``model`` compute what its base model computes: every LoRA B matrix is zero (or it has none)?"""
    return all(not p.detach().any() for name, p in model.named_parameters() if "lora_B" in name)


class BaseScores:
    """Per-worker memory of base-model scores: held-out row losses per dataset, reference scores per set.

    Its methods take the candidate's freshly attached model, which must not have taken a step yet (it then equals
    the base model); rows it has not seen are scored with that model and remembered. ``run_probe`` checks that the
    adapter is the identity before it reads the memory.
    """

    def __init__(self) -> None:
        self._rows: dict[Hashable, dict[int, tuple[float, int]]] = {}
        self._references: dict[Hashable, ReferenceScore] = {}

    def heldout_loss(
        self, model: torch.nn.Module, data_key: Hashable, pairs: EncodedPairs, indices: Sequence[int], pad_id: int
    ) -> float:
        """The base model's token-weighted mean answer loss on ``indices`` of the dataset named by ``data_key``."""
        known = self._rows.setdefault(data_key, {})
        missing = [i for i in indices if i not in known]
        if missing:
            sums, counts = answer_loss_sums(model, pairs, missing, pad_id)
            known.update(zip(missing, zip(sums.tolist(), counts.tolist(), strict=True), strict=True))
        rows = [known[i] for i in indices]
        return mean_answer_loss(np.array([s for s, _ in rows]), np.array([c for _, c in rows]))

    def reference(
        self, model: torch.nn.Module, reference_key: Hashable, reference: EncodedPairs, pad_id: int
    ) -> ReferenceScore:
        """The base model's score on the reference set named by ``reference_key``."""
        if reference_key not in self._references:
            self._references[reference_key] = score_reference(model, reference, pad_id)
        return self._references[reference_key]
