"""Exact and near duplicates.

Per row (map_batches side) we keep a 64-bit content hash and the MinHash LSH band keys of the row's word
shingles; per dataset (driver side) duplicates are found by grouping equal keys with numpy, which is cheap and
order-independent. Two rows are near-duplicate candidates when any band key matches, exactly the bucket
collision that ``datasketch.MinHashLSH`` reports at the same threshold and permutation count; candidates are
joined transitively into clusters. Both rates count the rows beyond the first of each cluster, i.e. the share of
the dataset that deduplication would remove.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence

import numpy as np
from datasketch import MinHash, MinHashLSH
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ._common import ArrowBatch, column_texts, column_words

__all__ = [
    "MINHASH_PERMUTATIONS",
    "NEAR_DUPLICATE_THRESHOLD",
    "SHINGLE_WORDS",
    "exact_duplicate_rate",
    "exact_duplicate_rate_of_hashes",
    "near_duplicate_rate",
    "near_duplicate_rate_of_bands",
    "row_hashes",
    "row_lsh_bands",
]

#: Estimated Jaccard similarity of word shingles above which two rows are near duplicates.
NEAR_DUPLICATE_THRESHOLD = 0.8
#: MinHash permutations per row.
MINHASH_PERMUTATIONS = 128
#: Words per shingle (prompt and response words in sequence).
SHINGLE_WORDS = 3
_MINHASH_SEED = 1
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


def hash64(text: str) -> int:
    """64-bit BLAKE2b hash of a text (lone surrogates kept), the row identity of exact-duplicate statistics."""
    return int.from_bytes(hashlib.blake2b(_utf8(text), digest_size=8).digest(), "little")


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def row_hashes(batch: ArrowBatch) -> np.ndarray:
    """Per row: 64-bit BLAKE2b hash of (prompt, response)."""
    pairs = zip(column_texts(batch, "prompt"), column_texts(batch, "response"), strict=True)
    return np.array(
        [hash64(f"{len(p)}:{p}{r}") for p, r in pairs],
        dtype=np.uint64,
    )


def exact_duplicate_rate_of_hashes(hashes: np.ndarray) -> float:
    """Share of rows that repeat an earlier row, from per-row content hashes."""
    return 1.0 - len(np.unique(hashes)) / len(hashes)


def exact_duplicate_rate(batch: ArrowBatch) -> float:
    """Share of rows whose (prompt, response) exactly repeats an earlier row."""
    return exact_duplicate_rate_of_hashes(row_hashes(batch))


@functools.cache
def _band_layout() -> tuple[int, int]:
    """(bands, rows per band) that ``datasketch`` picks for the threshold and permutation count."""
    lsh = MinHashLSH(threshold=NEAR_DUPLICATE_THRESHOLD, num_perm=MINHASH_PERMUTATIONS)
    return lsh.b, lsh.r


def _shingles(words: list[str]) -> list[bytes]:
    """Word 3-grams; a row with fewer words is one shingle of all its words."""
    if len(words) < SHINGLE_WORDS:
        return [_utf8(" ".join(words))]
    return [_utf8(" ".join(words[i : i + SHINGLE_WORDS])) for i in range(len(words) - SHINGLE_WORDS + 1)]


def _signatures(row_words: Sequence[list[str]]) -> np.ndarray:
    minhashes = MinHash.generator(
        (_shingles(words) for words in row_words), num_perm=MINHASH_PERMUTATIONS, seed=_MINHASH_SEED
    )
    return np.array([m.hashvalues for m in minhashes], dtype=np.uint64).reshape(len(row_words), -1)


def _band_keys(signatures: np.ndarray) -> np.ndarray:
    """64-bit FNV-1a hash of each LSH band of each signature, shape (rows, bands)."""
    bands, rows = _band_layout()
    values = signatures[:, : bands * rows].reshape(len(signatures), bands, rows)
    keys = np.full((len(signatures), bands), _FNV_OFFSET, dtype=np.uint64)
    for column in range(rows):
        keys = (keys ^ values[:, :, column]) * _FNV_PRIME
    return keys


def row_lsh_bands(prompt_words: Sequence[list[str]], response_words: Sequence[list[str]]) -> np.ndarray:
    """Per row: MinHash LSH band keys of the prompt + response word shingles, shape (rows, bands)."""
    return _band_keys(_signatures([p + r for p, r in zip(prompt_words, response_words, strict=True)]))


def near_duplicate_rate_of_bands(band_keys: np.ndarray) -> float:
    """Share of rows beyond the first of each near-duplicate cluster, from per-row LSH band keys."""
    count = len(band_keys)
    rows = np.arange(count)
    targets = []
    for band in np.asarray(band_keys).T:
        _, first, inverse = np.unique(band, return_index=True, return_inverse=True)
        targets.append(first[inverse])
    sources = np.tile(rows, len(targets))
    edges = coo_matrix((np.ones(len(sources), dtype=np.int8), (sources, np.concatenate(targets))), (count, count))
    clusters, _ = connected_components(edges, directed=False)
    return 1.0 - clusters / count


def near_duplicate_rate(batch: ArrowBatch) -> float:
    """Share of rows that near-duplicate an earlier row (MinHash LSH on word 3-gram shingles, Jaccard ~ 0.8)."""
    return near_duplicate_rate_of_bands(row_lsh_bands(column_words(batch, "prompt"), column_words(batch, "response")))
