"""Token-length descriptors under the base model's tokenizer (raw text, no chat template)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ._common import ArrowBatch, column_texts, exact_mean, exact_sum, ratio_of_sums

if TYPE_CHECKING:
    import tokenizers
    from transformers import PreTrainedTokenizerBase

__all__ = ["length_stats", "row_token_lengths", "token_length_stats"]


def row_token_lengths(
    batch: ArrowBatch, tokenizer: PreTrainedTokenizerBase | tokenizers.Tokenizer
) -> tuple[np.ndarray, np.ndarray]:
    """Per row: (prompt tokens, response tokens), without special tokens.

    ``tokenizer`` is a transformers tokenizer or a Rust ``tokenizers.Tokenizer`` (see ``counting_tokenizer``).
    """
    backend = getattr(tokenizer, "backend_tokenizer", tokenizer) if getattr(tokenizer, "is_fast", True) else None

    def count(name: str) -> np.ndarray:
        texts = column_texts(batch, name)
        if backend is not None:  # the Rust tokenizer's lengths, without building Python lists of token ids
            encodings = backend.encode_batch_fast(texts, add_special_tokens=False)
            return np.fromiter((len(row) for row in encodings), dtype=np.int64, count=len(texts))
        ids = tokenizer(texts, add_special_tokens=False, return_attention_mask=False)
        return np.array([len(row) for row in ids["input_ids"]], dtype=np.int64)

    return count("prompt"), count("response")


def _summary(name: str, values: np.ndarray) -> dict[str, float]:
    mean = exact_mean(values)
    std = math.sqrt(exact_sum((values - mean) ** 2) / len(values))
    p10, p50, p90 = np.percentile(values, [10, 50, 90])
    return {
        f"{name}_tokens_mean": mean,
        f"{name}_tokens_std": std,
        f"{name}_tokens_p10": float(p10),
        f"{name}_tokens_p50": float(p50),
        f"{name}_tokens_p90": float(p90),
    }


def length_stats(prompt_tokens: np.ndarray, response_tokens: np.ndarray) -> dict[str, float]:
    """Mean, population std and 10/50/90th percentiles of prompt, response and total tokens, plus the
    input/output length ratio (total prompt tokens / total response tokens)."""
    prompt = np.asarray(prompt_tokens, dtype=np.float64)
    response = np.asarray(response_tokens, dtype=np.float64)
    return {
        **_summary("prompt", prompt),
        **_summary("response", response),
        **_summary("total", prompt + response),
        "io_length_ratio": ratio_of_sums(prompt, response),
    }


def token_length_stats(
    batch: ArrowBatch, tokenizer: PreTrainedTokenizerBase | tokenizers.Tokenizer
) -> dict[str, float]:
    """Token-length distribution of prompts, responses and their sum, and the input/output length ratio."""
    return length_stats(*row_token_lengths(batch, tokenizer))
