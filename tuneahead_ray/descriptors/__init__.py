"""Static descriptors: pure functions on Arrow batches of prompt/response rows and the Ray Data pipeline that
computes them once per dataset.

Per-row work (tokenizing, word statistics, MinHash) is done by :class:`RowFeaturizer`, model-based work on a
seeded sample by :class:`ModelScorer`; both are ``map_batches`` callables. :func:`row_stats` and
:func:`model_stats` reduce their outputs to the flat vector named by :data:`STATIC_FEATURES`.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ._duplicates import (
    MINHASH_PERMUTATIONS,
    NEAR_DUPLICATE_THRESHOLD,
    SHINGLE_WORDS,
    exact_duplicate_rate,
    exact_duplicate_rate_of_hashes,
    near_duplicate_rate,
    near_duplicate_rate_of_bands,
    row_hashes,
    row_lsh_bands,
)
from ._lengths import LENGTH_FEATURES, length_stats, row_token_lengths, token_length_stats
from ._rows import ROW_FEATURES, RowFeaturizer, row_stats
from ._text import (
    NGRAM_SIZE,
    groundedness,
    instruction_complexity,
    ngram_repetition,
    prompt_words_mean,
    row_groundedness,
    row_instruction_complexity,
    row_ngram_repetition,
    row_prompt_words,
    row_special_chars,
    row_type_token_ratio,
    special_char_ratio,
    type_token_ratio,
)

if TYPE_CHECKING:
    from ._model import MODEL_FEATURES, ModelScorer, describe_sample, embedding_outlier_ratio, model_stats, sample_rows
    from ._pipeline import DESCRIPTORS_VERSION, ROWS_PER_BLOCK, STATIC_FEATURES, compute_descriptors, describe_table

#: Names whose modules import torch load on first use, so a Ray Data actor that only needs :class:`RowFeaturizer`
#: starts without it.
_LAZY = {
    **dict.fromkeys(
        ("MODEL_FEATURES", "ModelScorer", "describe_sample", "embedding_outlier_ratio", "model_stats", "sample_rows"),
        "._model",
    ),
    **dict.fromkeys(
        ("DESCRIPTORS_VERSION", "ROWS_PER_BLOCK", "STATIC_FEATURES", "compute_descriptors", "describe_table"),
        "._pipeline",
    ),
}


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "DESCRIPTORS_VERSION",
    "LENGTH_FEATURES",
    "MINHASH_PERMUTATIONS",
    "MODEL_FEATURES",
    "NEAR_DUPLICATE_THRESHOLD",
    "NGRAM_SIZE",
    "ROWS_PER_BLOCK",
    "ROW_FEATURES",
    "SHINGLE_WORDS",
    "STATIC_FEATURES",
    "ModelScorer",
    "RowFeaturizer",
    "compute_descriptors",
    "describe_sample",
    "describe_table",
    "embedding_outlier_ratio",
    "exact_duplicate_rate",
    "exact_duplicate_rate_of_hashes",
    "groundedness",
    "instruction_complexity",
    "length_stats",
    "model_stats",
    "near_duplicate_rate",
    "near_duplicate_rate_of_bands",
    "ngram_repetition",
    "prompt_words_mean",
    "row_groundedness",
    "row_hashes",
    "row_instruction_complexity",
    "row_lsh_bands",
    "row_ngram_repetition",
    "row_prompt_words",
    "row_special_chars",
    "row_stats",
    "row_token_lengths",
    "row_type_token_ratio",
    "sample_rows",
    "special_char_ratio",
    "token_length_stats",
    "type_token_ratio",
]
