"""Static descriptors: pure functions on Arrow batches of prompt/response rows and the Ray Data pipeline that
computes them once per dataset.

Per-row work (tokenizing, word statistics, MinHash) is done by :class:`RowFeaturizer`, model-based work on a
seeded sample by :class:`ModelScorer`; both are ``map_batches`` callables. :func:`row_stats` and
:func:`model_stats` reduce their outputs to the flat vector named by :data:`tuneahead_ray.features.STATIC_FEATURES`.

This package's namespace is torch-free (a Ray Data actor that only needs :class:`RowFeaturizer` starts without
torch); the model-based pass (:mod:`.model_pass`) and the Ray Data pipeline (:mod:`.pipeline`, with
``compute_descriptors``) are imported by name.
"""

from ._cache import read_cached, write_cached
from ._consistency import conflicting_response_rate, conflicting_response_rate_of_hashes, normalised_hashes
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
from ._lengths import length_stats, row_token_lengths, token_length_stats
from ._rows import RowFeaturizer, row_stats
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

__all__ = [
    "MINHASH_PERMUTATIONS",
    "NEAR_DUPLICATE_THRESHOLD",
    "NGRAM_SIZE",
    "SHINGLE_WORDS",
    "RowFeaturizer",
    "conflicting_response_rate",
    "conflicting_response_rate_of_hashes",
    "exact_duplicate_rate",
    "exact_duplicate_rate_of_hashes",
    "groundedness",
    "instruction_complexity",
    "length_stats",
    "near_duplicate_rate",
    "near_duplicate_rate_of_bands",
    "ngram_repetition",
    "normalised_hashes",
    "prompt_words_mean",
    "read_cached",
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
    "special_char_ratio",
    "token_length_stats",
    "type_token_ratio",
    "write_cached",
]
