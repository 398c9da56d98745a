"""Text descriptors computed per row from the words and characters of prompts and responses.

Each ``row_*`` function returns one value per row (the map_batches side); the dataset-level function of the
same name reduces those values (the cheap aggregation side) and is what the descriptor means.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ._common import ArrowBatch, column_words, exact_mean, ratio_of_sums

__all__ = [
    "NGRAM_SIZE",
    "groundedness",
    "instruction_complexity",
    "ngram_repetition",
    "prompt_words_mean",
    "row_groundedness",
    "row_instruction_complexity",
    "row_ngram_repetition",
    "row_prompt_words",
    "row_special_chars",
    "row_type_token_ratio",
    "special_char_ratio",
    "type_token_ratio",
]

#: Length of the word n-grams whose repetition inside a response is measured.
NGRAM_SIZE = 3

# RE2 patterns (pyarrow.compute). Letters, combining marks, digits and separators are ordinary characters.
_SPECIAL_CHAR = r"[^\p{L}\p{M}\p{N}\p{Z}\s]"
# A sentence end followed by more text: the prompt holds more than one sentence.
_MULTI_SENTENCE = r"[.!?]\s+\S|[。！？]\s*\S"
# A line that starts a bullet or a numbered item.
_LIST_ITEM = r"(?m)^\s*(?:[-*•]|\d+[.)])\s"
_DIGIT = r"[0-9]"
_COMPLEXITY_MARKERS = (_MULTI_SENTENCE, _LIST_ITEM, _DIGIT)


def _strings(batch: ArrowBatch, name: str) -> pa.Array:
    column = batch.column(name)
    return pc.fill_null(column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column, "")


# ----------------------------------------------------------------------------------------- special chars


def row_special_chars(batch: ArrowBatch) -> tuple[np.ndarray, np.ndarray]:
    """Per row: (special characters, all characters) of prompt + response."""
    special = np.zeros(batch.num_rows, dtype=np.int64)
    chars = np.zeros(batch.num_rows, dtype=np.int64)
    for name in ("prompt", "response"):
        texts = _strings(batch, name)
        special += pc.count_substring_regex(texts, _SPECIAL_CHAR).to_numpy(zero_copy_only=False)
        chars += pc.utf8_length(texts).to_numpy(zero_copy_only=False)
    return special, chars


def special_char_ratio(batch: ArrowBatch) -> float:
    """Share of all prompt + response characters that are not letters, marks, digits or whitespace."""
    return ratio_of_sums(*row_special_chars(batch))


# ---------------------------------------------------------------------------------------- type/token


def row_type_token_ratio(response_words: Sequence[list[str]]) -> np.ndarray:
    """Per row: distinct words / words of the response (1.0 for a response without words: nothing repeats)."""
    return np.array([len(set(ws)) / len(ws) if ws else 1.0 for ws in response_words], dtype=np.float64)


def type_token_ratio(batch: ArrowBatch) -> float:
    """Lexical diversity of the responses: mean over rows of distinct words / words."""
    return exact_mean(row_type_token_ratio(column_words(batch, "response")))


# ------------------------------------------------------------------------------------ n-gram repetition


def row_ngram_repetition(response_words: Sequence[list[str]], n: int = NGRAM_SIZE) -> np.ndarray:
    """Per row: share of the response's word n-grams that repeat an earlier n-gram of the same response."""
    shares = np.zeros(len(response_words), dtype=np.float64)
    for index, ws in enumerate(response_words):
        grams = list(zip(*(ws[offset:] for offset in range(n)), strict=False))
        if grams:
            shares[index] = 1.0 - len(set(grams)) / len(grams)
    return shares


def ngram_repetition(batch: ArrowBatch) -> float:
    """Degenerate, looping answers: mean over rows of the share of repeated word 3-grams in the response."""
    return exact_mean(row_ngram_repetition(column_words(batch, "response")))


# ---------------------------------------------------------------------------------------- groundedness


def row_groundedness(prompt_words: Sequence[list[str]], response_words: Sequence[list[str]]) -> np.ndarray:
    """Per row: share of the response's words that also occur in the prompt (0.0 for a response without words)."""
    shares = np.zeros(len(response_words), dtype=np.float64)
    for index, (prompt, response) in enumerate(zip(prompt_words, response_words, strict=True)):
        if response:
            vocabulary = set(prompt)
            shares[index] = sum(word in vocabulary for word in response) / len(response)
    return shares


def groundedness(batch: ArrowBatch) -> float:
    """How much answers are copied from or anchored in their prompts: mean over rows of the grounded word share."""
    return exact_mean(row_groundedness(column_words(batch, "prompt"), column_words(batch, "response")))


# ------------------------------------------------------------------------------- instruction complexity


def row_instruction_complexity(batch: ArrowBatch) -> np.ndarray:
    """Per row: share of three complexity markers the prompt shows.

    The markers: more than one sentence (context plus question, or several instructions), an enumerated or
    bulleted list (a multi-part task), and digits (quantitative constraints or data to compute with).
    """
    prompts = _strings(batch, "prompt")
    present = [
        pc.match_substring_regex(prompts, marker).to_numpy(zero_copy_only=False) for marker in _COMPLEXITY_MARKERS
    ]
    return np.mean(np.stack(present).astype(np.float64), axis=0)


def instruction_complexity(batch: ArrowBatch) -> float:
    """Mean over prompts of the share of complexity markers present (0 = one plain sentence, 1 = all three)."""
    return exact_mean(row_instruction_complexity(batch))


def row_prompt_words(prompt_words: Sequence[list[str]]) -> np.ndarray:
    """Per row: number of words in the prompt."""
    return np.array([len(ws) for ws in prompt_words], dtype=np.int64)


def prompt_words_mean(batch: ArrowBatch) -> float:
    """Mean number of words per prompt (the length side of instruction complexity)."""
    return exact_mean(row_prompt_words(column_words(batch, "prompt")))
