"""Descriptors that need the base model, computed on a bounded, seeded random sample of rows.

:class:`ModelScorer` is a callable class for ``map_batches`` (or a plain loop): it loads the model once and
returns, per sampled row, the response log-perplexity, the prompt/response embedding cosine and a row
embedding. :func:`model_stats` reduces those rows to the dataset-level descriptors.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F

from ..base_models import DEFAULT_MODEL, load_model
from ..training import (
    EncodedPairs,
    answer_agreement,
    answer_scores_from_hidden,
    answer_token_losses,
    collate,
    decoder_hidden_states,
    encode_pairs,
    uses_answer_head,
)
from ._common import ArrowBatch, column_texts, exact_mean, untruncated_tokenizer

__all__ = [
    "SAMPLE_INDEX",
    "ModelScorer",
    "describe_sample",
    "embedding_outlier_ratio",
    "model_stats",
    "sample_rows",
]

#: A row is "high-loss" when the base model gives its answer tokens under 10% probability on average.
HIGH_LOSS_NLL = float(np.log(10.0))
#: Column that carries each sampled row's position in the sample, so results can be put back in order.
SAMPLE_INDEX = "sample_index"
_MAX_SEQ_LEN = 512


def sample_rows(table: pa.Table, size: int, seed: int) -> pa.Table:
    """A seeded uniform sample of at most ``size`` rows (in table order) with a ``sample_index`` column."""
    picked = np.random.default_rng(seed).choice(table.num_rows, size=min(size, table.num_rows), replace=False)
    sample = table.select(["prompt", "response"]).take(np.sort(picked))
    return sample.append_column(SAMPLE_INDEX, pa.array(np.arange(sample.num_rows), pa.int64()))


def _mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)


def _response_log_perplexity(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of each row's response tokens (labels not equal to -100)."""
    sums, counts = answer_token_losses(logits, labels)
    return sums / counts.clamp(min=1)


class ModelScorer:
    """Loads the base model once; scores batches of sampled rows (``prompt``, ``response``, ``sample_index``).

    Rows are run through the model in groups of similar length, so little compute goes to padding.
    """

    def __init__(self, model: str | Path = DEFAULT_MODEL, device: str = "auto", batch_size: int = 16) -> None:
        self.tokenizer = untruncated_tokenizer(model)
        self.model = load_model(model, device).eval()
        self.device = next(self.model.parameters()).device
        self.batch_size = batch_size
        self.max_seq_len = min(_MAX_SEQ_LEN, getattr(self.model.config, "max_position_embeddings", _MAX_SEQ_LEN))

    def __call__(self, batch: ArrowBatch) -> pa.Table:
        prompts, responses = column_texts(batch, "prompt"), column_texts(batch, "response")
        log_ppl, match, agreement, embeddings = self._score_pairs(
            encode_pairs(self.tokenizer, prompts, responses, self.max_seq_len)
        )
        similarity = F.cosine_similarity(self._embed(prompts), self._embed(responses), dim=-1)
        return pa.table(
            {
                SAMPLE_INDEX: batch.column(SAMPLE_INDEX),
                "log_perplexity": log_ppl.numpy().astype(np.float64),
                "answer_match": match.numpy().astype(np.float64),
                "token_agreement": agreement.numpy().astype(np.float64),
                "io_similarity": similarity.numpy().astype(np.float64),
                "embedding": pa.FixedSizeListArray.from_arrays(embeddings.numpy().ravel(), embeddings.shape[1]),
            }
        )

    def _length_groups(self, sequences: Sequence[Sequence[int]]) -> list[np.ndarray]:
        order = np.argsort([len(ids) for ids in sequences], kind="stable")
        return [order[start : start + self.batch_size] for start in range(0, len(order), self.batch_size)]

    def _hidden(self, input_ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and mean-pooled last hidden state."""
        out = self.model(
            input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device), output_hidden_states=True
        )
        return out.logits, _mean_pool(out.hidden_states[-1], mask.to(self.device)).float().cpu()

    def _answer_scores(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """Response log-perplexity, greedy exact match, token agreement and pooled hidden state of each row.

        A large-vocabulary model applies its head at answer positions only (``training._head``), never
        materialising logits for every position."""
        input_ids, mask = inputs["input_ids"].to(self.device), inputs["attention_mask"].to(self.device)
        if uses_answer_head(self.model):
            hidden = decoder_hidden_states(self.model, input_ids, mask)
            sums, counts, hits = answer_scores_from_hidden(self.model, hidden, inputs["labels"])
            pooled = _mean_pool(hidden, mask).float().cpu()
            share = hits.double() / counts.clamp(min=1).double()
            return (sums / counts.clamp(min=1)).double(), (hits == counts).double(), share, pooled
        logits, pooled = self._hidden(input_ids, mask)
        labels = inputs["labels"].to(self.device)
        exact, share = answer_agreement(logits, labels)
        return _response_log_perplexity(logits, labels).double().cpu(), exact.double().cpu(), share.cpu(), pooled

    @torch.inference_mode()
    def _score_pairs(self, pairs: EncodedPairs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per pair under the chat template: response log-perplexity, greedy exact match of the response, share
        of response tokens the base model predicts, and the mean-pooled last hidden state."""
        log_ppl = torch.zeros(len(pairs), dtype=torch.float64)
        match = torch.zeros(len(pairs), dtype=torch.float64)
        agreement = torch.zeros(len(pairs), dtype=torch.float64)
        pooled = torch.zeros(len(pairs), self.model.config.hidden_size)
        for group in self._length_groups(pairs.input_ids):
            inputs = collate(pairs, group, self.tokenizer.pad_token_id)
            log_ppl[group], match[group], agreement[group], pooled[group] = self._answer_scores(inputs)
        return log_ppl, match, agreement, pooled

    @torch.inference_mode()
    def _embed(self, texts: Sequence[str]) -> torch.Tensor:
        """Mean-pooled last hidden state of each text on its own (an empty text embeds as the end-of-text token)."""
        eos = self.tokenizer.convert_tokens_to_ids(self.tokenizer.eos_token)
        encoded = self.tokenizer(list(texts), add_special_tokens=False, return_attention_mask=False)["input_ids"]
        sequences = [ids[: self.max_seq_len] or [eos] for ids in encoded]
        pooled = torch.zeros(len(sequences), self.model.config.hidden_size)
        for group in self._length_groups(sequences):
            input_ids, mask = _right_padded([sequences[i] for i in group], self.tokenizer.pad_token_id)
            pooled[group] = self._hidden(input_ids, mask)[1]
        return pooled


def _right_padded(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(ids) for ids in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, ids in enumerate(sequences):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        mask[row, : len(ids)] = 1
    return input_ids, mask


def embedding_outlier_ratio(embeddings: np.ndarray, seed: int) -> float:
    """Share of rows an IsolationForest (contamination 'auto', seeded) flags as outliers in embedding space.

    Fewer than two rows, or rows that all share one embedding, have no outliers.
    """
    if len(embeddings) < 2 or not np.ptp(embeddings, axis=0).any():
        return 0.0
    from sklearn.ensemble import IsolationForest  # heavy import, needed on the driver only

    forest = IsolationForest(contamination="auto", random_state=seed).fit(embeddings)
    return float(np.mean(forest.predict(embeddings) == -1))


def model_stats(scores: pa.Table, seed: int) -> dict[str, float]:
    """Dataset-level model descriptors from :class:`ModelScorer` rows (any order; sorted by sample index).

    - ``embedding_outlier_ratio``: share of sampled rows that are outliers among the rows' embeddings (mean-pooled
      last hidden state of the chat-formatted pair), see :func:`embedding_outlier_ratio`.
    - ``io_similarity``: mean cosine similarity of the prompt's and the response's embeddings, each embedded
      on its own; high when answers restate their prompts, low when they are unrelated.
    - ``reference_log_perplexity``: mean over rows of the base model's per-token negative log-likelihood of the
      response given the chat-formatted prompt (loss on response tokens only): how far the data is from what
      the model already predicts.
    - ``base_answer_match``: share of sampled rows whose answer the base model reproduces exactly by greedy
      decoding. Wrong labels (and off-target or reformatted answers) lower it in proportion to their share.
    - ``base_token_agreement``: mean share of answer tokens the base model predicts (arg-max), a finer version.
    - ``high_loss_share``: share of sampled rows whose answer-token negative log-likelihood exceeds ln 10 (the
      base model gives the answer under 10% per-token probability): the tail that mislabeled rows fill.
    """
    ordered = scores.sort_by(SAMPLE_INDEX)
    embeddings = ordered.column("embedding").combine_chunks()
    matrix = embeddings.flatten().to_numpy().reshape(len(embeddings), -1)
    return {
        "embedding_outlier_ratio": embedding_outlier_ratio(matrix, seed),
        "io_similarity": exact_mean(ordered.column("io_similarity").to_numpy()),
        "reference_log_perplexity": exact_mean(ordered.column("log_perplexity").to_numpy()),
        "base_answer_match": exact_mean(ordered.column("answer_match").to_numpy()),
        "base_token_agreement": exact_mean(ordered.column("token_agreement").to_numpy()),
        "high_loss_share": exact_mean((ordered.column("log_perplexity").to_numpy() > HIGH_LOSS_NLL).astype(float)),
    }


def describe_sample(table: pa.Table, scorer: ModelScorer, sample_size: int, seed: int = 0) -> dict[str, float]:
    """Only the model-based descriptors of a prompt/response table, in-process with a loaded ``scorer``: the
    same seeded sample and values as :func:`describe_table`, without its per-row pass."""
    return model_stats(scorer(sample_rows(table, sample_size, seed)), seed)
