"""The answer-position head: for a large-vocabulary model, the loss, its gradients and the per-row scores equal the
plain forward's (up to summation order) while logits are computed only where an answer token is predicted."""

from __future__ import annotations

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from tuneahead_ray.base_models import load_model
from tuneahead_ray.schemas import HyperParams
from tuneahead_ray.training import _head as head_module
from tuneahead_ray.training import (
    answer_agreement,
    answer_head_loss,
    answer_token_losses,
    attach_adapter,
    collate,
    encode_pairs,
    score_rows,
    uses_answer_head,
)

HP = HyperParams(lr=1e-3, lora_r=4, lora_alpha=8, lora_dropout=0.0, batch_size=6, max_steps=4, seed=1)


@pytest.fixture(scope="module")
def large_vocab_model() -> Qwen2ForCausalLM:
    """A Qwen2 with a vocabulary above the answer-head threshold (built here, random weights)."""
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=head_module.ANSWER_HEAD_MIN_VOCAB + 100,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=False,
    )
    return Qwen2ForCausalLM(config).eval()


@pytest.fixture(scope="module")
def pairs(tokenizer):
    prompts = [f"Question {i}: " + "what is it? " * (i % 5) for i in range(10)]
    answers = [f"answer {i} " * (1 + i % 3) for i in range(10)]
    return encode_pairs(tokenizer, prompts, answers, 128)


def test_only_a_large_plain_vocabulary_takes_the_answer_head(large_vocab_model) -> None:
    assert uses_answer_head(large_vocab_model)
    assert not uses_answer_head(load_model("default", "cpu"))  # the embedded model keeps its plain forward
    config = large_vocab_model.config.to_dict()
    capped = Qwen2ForCausalLM(Qwen2Config(**{**config, "final_logit_softcapping": 30.0}))  # not reproduced here
    assert not uses_answer_head(capped)


def test_loss_and_lora_gradients_equal_the_plain_forwards(large_vocab_model, pairs, tokenizer) -> None:
    model = attach_adapter(large_vocab_model, HP)
    with torch.no_grad():  # a non-identity adapter, so its gradients flow through a changed model
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    assert uses_answer_head(model)  # through the peft wrapper
    batch = collate(pairs, range(len(pairs)), tokenizer.pad_token_id)
    params = [p for p in model.parameters() if p.requires_grad]

    plain = model(**batch).loss
    plain_grads = torch.autograd.grad(plain, params)
    chunked = answer_head_loss(model, batch)
    chunked_grads = torch.autograd.grad(chunked, params)
    assert float(chunked) == pytest.approx(float(plain), rel=1e-5)
    for ours, theirs in zip(chunked_grads, plain_grads, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6)
    model.unload()


def test_chunks_smaller_than_the_answer_give_the_same_loss(large_vocab_model, pairs, tokenizer, monkeypatch) -> None:
    batch = collate(pairs, range(len(pairs)), tokenizer.pad_token_id)
    whole = float(answer_head_loss(large_vocab_model, batch))
    monkeypatch.setattr(head_module, "CHUNK_TOKENS", 7)  # many chunks, a ragged last one
    assert float(answer_head_loss(large_vocab_model, batch)) == pytest.approx(whole, rel=1e-6)


def test_row_scores_equal_the_plain_forwards_in_any_batching(large_vocab_model, pairs, tokenizer) -> None:
    indices = [7, 2, 9, 0, 4]
    batch = collate(pairs, indices, tokenizer.pad_token_id)
    with torch.no_grad():
        logits = large_vocab_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    sums, counts = answer_token_losses(logits, batch["labels"])
    exact, share = answer_agreement(logits, batch["labels"])
    for budget in (10_000, 60):  # one batch; then length-sorted batches of a few rows, put back in order
        scores = score_rows(large_vocab_model, pairs, indices, tokenizer.pad_token_id, token_budget=budget)
        torch.testing.assert_close(scores.loss_sums, sums, rtol=1e-5, atol=1e-5)
        assert scores.counts.tolist() == counts.tolist()
        assert scores.exact.tolist() == exact.tolist()
        torch.testing.assert_close(scores.token_share, share.double())
    assert len(score_rows(large_vocab_model, pairs, [], tokenizer.pad_token_id).counts) == 0


@pytest.mark.parametrize("which", ["embedded", "large_vocab"])
def test_next_token_logprobs_equal_one_token_continuations_scored_whole(which, large_vocab_model, tokenizer) -> None:
    """The multiple-choice letter fast path: one forward per context gives each candidate next token's
    log-probability, as scoring every context + token sequence separately does."""
    import numpy as np

    from tuneahead_ray.training import EncodedPairs, next_token_logprobs

    model = load_model("default", "cpu") if which == "embedded" else large_vocab_model
    contexts = [
        tokenizer(f"Question {i}: {'why ' * i}Answer: ", add_special_tokens=False)["input_ids"] for i in range(7)
    ]
    candidates = tokenizer(["A", "B", "C", "D"], add_special_tokens=False)["input_ids"]
    token_ids = [ids[0] for ids in candidates]
    fast = next_token_logprobs(model, contexts, tokenizer.pad_token_id, token_ids, token_budget=64)
    sequences = [np.asarray([*c, t]) for c in contexts for t in token_ids]
    pairs = EncodedPairs(sequences, np.array([len(s) - 1 for s in sequences]), np.array([len(s) for s in sequences]), 0)
    whole = -score_rows(model, pairs, range(len(pairs)), tokenizer.pad_token_id).loss_sums.double().numpy()
    np.testing.assert_allclose(fast, whole.reshape(len(contexts), len(token_ids)), rtol=1e-4, atol=1e-4)


def test_descriptor_scores_of_a_large_vocabulary_model_equal_the_plain_forwards(large_vocab_model, pairs, tokenizer):
    from tuneahead_ray.descriptors.model_pass import ModelScorer, _response_log_perplexity

    scorer = ModelScorer("default", "cpu")
    scorer.model = large_vocab_model  # shapes of a real model's head; the same tokenizer
    inputs = collate(pairs, range(len(pairs)), tokenizer.pad_token_id)
    log_ppl, exact, share, pooled = scorer._answer_scores(inputs)  # the answer-position path
    with torch.no_grad():
        logits, plain_pooled = scorer._hidden(inputs["input_ids"], inputs["attention_mask"])
    torch.testing.assert_close(
        log_ppl, _response_log_perplexity(logits, inputs["labels"]).double(), rtol=1e-5, atol=1e-5
    )
    plain_exact, plain_share = answer_agreement(logits, inputs["labels"])
    assert exact.tolist() == plain_exact.double().tolist()
    torch.testing.assert_close(share, plain_share.double())
    torch.testing.assert_close(pooled, plain_pooled)
