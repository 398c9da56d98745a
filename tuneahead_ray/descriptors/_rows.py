"""Per-row features of a whole dataset (the ``map_batches`` side) and their per-dataset reduction."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..base_models import DEFAULT_MODEL
from ._common import ArrowBatch, column_words, counting_tokenizer, exact_mean, ratio_of_sums
from ._consistency import conflicting_response_rate_of_hashes, normalised_hashes
from ._duplicates import exact_duplicate_rate_of_hashes, near_duplicate_rate_of_bands, row_hashes, row_lsh_bands
from ._lengths import length_stats, row_token_lengths
from ._text import (
    row_groundedness,
    row_instruction_complexity,
    row_ngram_repetition,
    row_prompt_words,
    row_special_chars,
    row_type_token_ratio,
)

__all__ = ["RowFeaturizer", "row_stats"]


class RowFeaturizer:
    """Loads the base model's tokenizer once; maps a prompt/response batch to a table of per-row features.

    ``single_threaded`` turns off the tokenizer's own thread pool: a Ray Data actor given one CPU should use one
    core, so that parallel actors do not compete for the same cores (a plain process keeps the library default).
    """

    def __init__(self, model: str | Path = DEFAULT_MODEL, single_threaded: bool = False) -> None:
        if single_threaded:
            os.environ["TOKENIZERS_PARALLELISM"] = "false"  # read by the Rust tokenizer on every batch call
        self.tokenizer = counting_tokenizer(model)

    def __call__(self, batch: ArrowBatch) -> pa.Table:
        prompt_words, response_words = column_words(batch, "prompt"), column_words(batch, "response")
        prompt_tokens, response_tokens = row_token_lengths(batch, self.tokenizer)
        special_chars, chars = row_special_chars(batch)
        bands = row_lsh_bands(prompt_words, response_words)
        return pa.table(
            {
                "prompt_tokens": prompt_tokens,
                "response_tokens": response_tokens,
                "special_chars": special_chars,
                "chars": chars,
                "type_token_ratio": row_type_token_ratio(response_words),
                "ngram_repetition": row_ngram_repetition(response_words),
                "prompt_words": row_prompt_words(prompt_words),
                "instruction_complexity": row_instruction_complexity(batch),
                "groundedness": row_groundedness(prompt_words, response_words),
                "row_hash": row_hashes(batch),
                "prompt_hash": normalised_hashes(batch, "prompt"),
                "response_hash": normalised_hashes(batch, "response"),
                "lsh_bands": pa.FixedSizeListArray.from_arrays(bands.ravel(), bands.shape[1]),
            }
        )


def row_stats(rows: pa.Table) -> dict[str, float]:
    """Reduce per-row features (any row order) to the :data:`ROW_FEATURES` of the dataset."""
    if rows.num_rows == 0:
        raise ValueError("no rows to describe")

    def values(name: str) -> np.ndarray:
        return rows.column(name).to_numpy()

    bands = rows.column("lsh_bands").combine_chunks()
    return {
        "num_rows": float(rows.num_rows),
        **length_stats(values("prompt_tokens"), values("response_tokens")),
        "special_char_ratio": ratio_of_sums(values("special_chars"), values("chars")),
        "type_token_ratio": exact_mean(values("type_token_ratio")),
        "ngram_repetition": exact_mean(values("ngram_repetition")),
        "prompt_words_mean": exact_mean(values("prompt_words")),
        "instruction_complexity": exact_mean(values("instruction_complexity")),
        "groundedness": exact_mean(values("groundedness")),
        "exact_duplicate_rate": exact_duplicate_rate_of_hashes(values("row_hash")),
        "near_duplicate_rate": near_duplicate_rate_of_bands(bands.flatten().to_numpy().reshape(len(bands), -1)),
        "conflicting_response_rate": conflicting_response_rate_of_hashes(
            values("prompt_hash"), values("response_hash")
        ),
    }
