"""Helpers shared by the descriptor modules: batch access, word splitting and order-independent means."""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from ..base_models import load_tokenizer, resolve_model_dir

if TYPE_CHECKING:
    import tokenizers
    from transformers import PreTrainedTokenizerBase

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


def counting_tokenizer(model: str | Path) -> PreTrainedTokenizerBase | tokenizers.Tokenizer:
    """A tokenizer for counting tokens of whole texts, cheap to load.

    The Rust tokenizer straight from the directory's ``tokenizer.json`` (truncation and padding off) when there is
    one: a Ray Data actor then starts without importing transformers and torch (seconds per actor). Otherwise the
    transformers tokenizer.
    """
    path = resolve_model_dir(model) / "tokenizer.json"
    if not path.is_file():
        return untruncated_tokenizer(model)
    text = path.read_text(encoding="utf-8")  # read once: checked against the config, then loaded
    if _config_changes_tokenization(path.parent, json.loads(text)):
        return untruncated_tokenizer(model)
    import tokenizers

    tokenizer = tokenizers.Tokenizer.from_str(text)
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def _config_changes_tokenization(directory: Path, backend: dict) -> bool:
    """Does ``tokenizer_config.json`` ask transformers to tokenize differently from ``tokenizer.json`` alone
    (``backend``, parsed): split special tokens, a prefix space, SentencePiece legacy handling, added tokens only
    listed there?"""
    config_file = directory / "tokenizer_config.json"
    if not config_file.is_file():
        return False
    config = json.loads(config_file.read_text(encoding="utf-8"))
    if config.get("split_special_tokens") or config.get("add_prefix_space") or "legacy" in config:
        return True
    listed = {token.get("content") for token in config.get("added_tokens_decoder", {}).values()}
    for key in ("additional_special_tokens", "extra_special_tokens"):
        extra = config.get(key) or []
        listed |= {token if isinstance(token, str) else token.get("content") for token in extra}
    return not listed <= {token.get("content") for token in backend.get("added_tokens", [])}


def untruncated_tokenizer(model: str | Path) -> PreTrainedTokenizerBase:
    """The model's tokenizer for whole texts: descriptors count all tokens and truncate themselves where needed."""
    tokenizer = load_tokenizer(model)
    tokenizer.model_max_length = sys.maxsize
    return tokenizer
