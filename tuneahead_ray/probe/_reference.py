"""The probe's reference set: a small, fixed, clean sample of the target task, scored before and after the probe.

The candidate's own held-out rows say whether the probe learns *its data*; a reference set says whether it moves
the model toward *the task the score measures*. Label noise, off-target data or a wrong format can lower the loss on
the candidate's own rows while the reference loss stays flat or rises, which the own-data loss cannot show.

The default reference for the embedded model is drawn from the testbed benchmark families' training distribution
(clean, every level, its own seed): never the benchmark items themselves. With a real model, point
``ProbeSpec.reference_path`` at a small file of examples of the target task (any format the data loaders read).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from tuneahead_ray.data import load_dataset
from tuneahead_ray.schemas import DatasetRef
from tuneahead_ray.testbed import BENCHMARK_FAMILIES, MAX_LEVEL, DataSpec, generate_records
from tuneahead_ray.training import EncodedPairs, encode_pairs, score_rows

__all__ = ["REFERENCE_SEED", "ReferenceScore", "encode_reference", "reference_examples", "score_reference"]

#: Seed of the default reference sample (distinct from the benchmark's seed).
REFERENCE_SEED = 4_207
_MAX_SEQ_LEN = 256


@dataclass(frozen=True)
class ReferenceScore:
    """The model on the reference set: answer-token loss, greedy exact-match share and answer-token accuracy."""

    loss: float
    exact_match: float
    token_accuracy: float


@lru_cache(maxsize=4)
def reference_examples(path: str | None, size: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``size`` (prompt, answer) pairs: a seeded sample of the file at ``path``, or the testbed default."""
    if path is None:
        spec = DataSpec(
            size=size,
            families={fam.name: 1.0 for fam in BENCHMARK_FAMILIES},
            min_level=1,
            max_level=MAX_LEVEL,
            seed=REFERENCE_SEED,
        )
        records = generate_records(spec)
        return (
            tuple(r["messages"][0]["content"] for r in records),
            tuple(r["messages"][1]["content"] for r in records),
        )
    table = load_dataset(DatasetRef(path=Path(path)))
    picked = np.sort(np.random.default_rng(REFERENCE_SEED).permutation(table.num_rows)[:size])
    table = table.take(picked)
    return tuple(table.column("prompt").to_pylist()), tuple(table.column("response").to_pylist())


def encode_reference(tokenizer: PreTrainedTokenizerBase, path: str | None, size: int) -> EncodedPairs | None:
    """The reference set encoded with the model's chat template; ``None`` when ``size`` is 0."""
    if size == 0:
        return None
    prompts, answers = reference_examples(path, size)
    return encode_pairs(tokenizer, prompts, answers, _MAX_SEQ_LEN)


def score_reference(model: torch.nn.Module, pairs: EncodedPairs, pad_id: int) -> ReferenceScore:
    """The reference set, teacher-forced in eval mode (no randomness is consumed)."""
    scores = score_rows(model, pairs, range(len(pairs)), pad_id)
    return ReferenceScore(
        loss=scores.mean_loss,
        exact_match=float(scores.exact.float().mean()),
        token_accuracy=float(scores.token_share.mean()),
    )
