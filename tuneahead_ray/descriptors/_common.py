"""Helpers shared by the descriptor modules: batch access, word splitting and order-independent means."""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
from transformers import PreTrainedTokenizerBase

from ..modeling import load_tokenizer

ArrowBatch = pa.Table | pa.RecordBatch

#: A word is a maximal run of Unicode word characters, compared lowercased.
_WORD = re.compile(r"\w+")


def column_texts(batch: ArrowBatch, name: str) -> list[str]:
    """The strings of column ``name`` (``prompt`` or ``response``); a null counts as an empty string."""
    return ["" if text is None else text for text in batch.column(name).to_pylist()]


def words(text: str) -> list[str]:
    """Lowercased words of ``text``."""
    return _WORD.findall(text.lower())


def column_words(batch: ArrowBatch, name: str) -> list[list[str]]:
    """Lowercased words of every row of column ``name``."""
    return [words(text) for text in column_texts(batch, name)]


def exact_sum(values: np.ndarray) -> float:
    """Exactly rounded sum: the result does not depend on the order of rows or blocks."""
    return math.fsum(np.asarray(values, dtype=np.float64).tolist())


def exact_mean(values: np.ndarray) -> float:
    """Mean over an exactly rounded sum."""
    if len(values) == 0:
        raise ValueError("mean of no values")
    return exact_sum(values) / len(values)


def ratio_of_sums(numerators: np.ndarray, denominators: np.ndarray) -> float:
    """``sum(numerators) / sum(denominators)``, 0.0 when the denominator sums to zero."""
    total = exact_sum(denominators)
    return exact_sum(numerators) / total if total else 0.0


def untruncated_tokenizer(model: str | Path) -> PreTrainedTokenizerBase:
    """The model's tokenizer for whole texts: descriptors count all tokens and truncate themselves where needed."""
    tokenizer = load_tokenizer(model)
    tokenizer.model_max_length = sys.maxsize
    return tokenizer
