"""Encoding pairs with the chat template, batching, and exact match checked against real greedy decoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tuneahead_ray.testbed import benchmark_items
from tuneahead_ray.training import collate, encode_pairs, exact_match, exact_match_by_group
from tuneahead_ray.training._encode import IGNORE_INDEX


def chat_head(tokenizer, prompt: str) -> list[int]:
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def ids_of(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


# ------------------------------------------------------------------------------------------------ encoding


def test_encode_splits_prompt_and_response_and_ends_with_eos(tokenizer) -> None:
    prompts, responses = ["add 1 2", "count a in abcab", "color of kalo"], ["3", "2", "teal"]
    pairs = encode_pairs(tokenizer, prompts, responses, max_seq_len=64)
    assert len(pairs) == 3 and pairs.truncated == 0
    for i, (prompt, response) in enumerate(zip(prompts, responses, strict=True)):
        ids = pairs.input_ids[i].tolist()
        start, end = int(pairs.response_start[i]), int(pairs.response_end[i])
        assert end == len(ids)
        assert ids[:start] == chat_head(tokenizer, prompt)
        assert ids[start:] == ids_of(tokenizer, response) + [tokenizer.eos_token_id]
        assert ids[-1] == tokenizer.eos_token_id


def test_response_is_cut_after_the_first_end_of_turn(tokenizer) -> None:
    eos = tokenizer.eos_token
    pairs = encode_pairs(tokenizer, ["say kalo"], [f"mimi{eos}nunu"], max_seq_len=64)
    start = int(pairs.response_start[0])
    assert pairs.input_ids[0][start:].tolist() == ids_of(tokenizer, "mimi") + [tokenizer.eos_token_id]


def test_long_prompt_is_truncated_from_the_left_and_the_response_survives(tokenizer) -> None:
    long_prompt = "count a in " + "abc" * 30
    prompts, responses = [long_prompt, "add 1 2", "reverse " + "abcdefghij" * 5], ["30", "3", "jihgfedcba"]
    max_seq_len = 24
    pairs = encode_pairs(tokenizer, prompts, responses, max_seq_len=max_seq_len)
    assert pairs.truncated == 2
    for i, (prompt, response) in enumerate(zip(prompts, responses, strict=True)):
        ids = pairs.input_ids[i].tolist()
        start = int(pairs.response_start[i])
        tail = ids_of(tokenizer, response) + [tokenizer.eos_token_id]
        assert ids[start:] == tail
        head = chat_head(tokenizer, prompt)
        if len(head) + len(tail) > max_seq_len:
            assert len(ids) == max_seq_len
            # The end of the prompt (with the assistant marker) is kept, its beginning is dropped.
            assert ids[:start] == head[len(head) - (max_seq_len - len(tail)) :]
        else:
            assert ids[:start] == head


_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


@settings(max_examples=60, deadline=None)
@given(prompt=_TEXT, response=_TEXT, max_seq_len=st.integers(8, 48))
def test_encoding_never_exceeds_max_seq_len_and_counts_truncation(tokenizer, prompt, response, max_seq_len) -> None:
    pairs = encode_pairs(tokenizer, [prompt], [response], max_seq_len=max_seq_len)
    ids = pairs.input_ids[0].tolist()
    start, end = int(pairs.response_start[0]), int(pairs.response_end[0])
    head, tail = chat_head(tokenizer, prompt), ids_of(tokenizer, response) + [tokenizer.eos_token_id]
    assert len(ids) <= max_seq_len and 0 < start < end == len(ids)
    assert ids[start:] == tail[: end - start]
    if len(head) + len(tail) <= max_seq_len:
        assert pairs.truncated == 0 and ids == head + tail
    else:
        assert pairs.truncated == 1 and len(ids) == max_seq_len


def test_collate_pads_right_and_masks_everything_but_the_response(tokenizer) -> None:
    pairs = encode_pairs(tokenizer, ["add 1 2", "count a in abcabcabc", "home of kalo"], ["3", "3", "vento"], 64)
    pad = tokenizer.pad_token_id
    indices = [1, 0, 2]
    batch = collate(pairs, indices, pad)
    width = max(len(pairs.input_ids[i]) for i in indices)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape == (3, width)
    for row, i in enumerate(indices):
        ids = torch.from_numpy(pairs.input_ids[i])
        n, start, end = len(ids), int(pairs.response_start[i]), int(pairs.response_end[i])
        assert torch.equal(batch["input_ids"][row, :n], ids)
        assert (batch["input_ids"][row, n:] == pad).all()
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (width - n)
        assert (batch["labels"][row, :start] == IGNORE_INDEX).all()
        assert torch.equal(batch["labels"][row, start:end], ids[start:end])
        assert (batch["labels"][row, end:] == IGNORE_INDEX).all()
    assert (batch["attention_mask"][0] == 1).all(), "the longest sequence needs no padding"


# ---------------------------------------------------------------------------------------- exact match


def greedy_answers(model, tokenizer, prompts: list[str], max_new_tokens: int = 8) -> list[list[int] | None]:
    """Token ids that greedy decoding emits before the end-of-turn token; None when it never ends the turn."""
    out: list[list[int] | None] = []
    with torch.no_grad():
        for prompt in prompts:
            ids = torch.tensor([chat_head(tokenizer, prompt)])
            generated = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                do_sample=False,
                max_new_tokens=max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )[0, ids.shape[1] :].tolist()
            end = generated.index(tokenizer.eos_token_id) if tokenizer.eos_token_id in generated else None
            out.append(None if end is None else generated[:end])
    return out


@pytest.fixture(scope="module")
def sample_items():
    items = benchmark_items()
    return items[::12]  # 40 items spread over every family and level


@pytest.fixture(scope="module")
def generations(base_model, tokenizer, sample_items):
    return greedy_answers(base_model, tokenizer, [item.prompt for item in sample_items])


def test_exact_match_equals_greedy_decoding(base_model, tokenizer, sample_items, generations) -> None:
    prompts, answers = [i.prompt for i in sample_items], [i.answer for i in sample_items]
    expected = np.array(
        [gen is not None and gen == ids_of(tokenizer, ans) for gen, ans in zip(generations, answers, strict=True)]
    )
    assert 0 < expected.sum() < len(expected), "a sample with both outcomes is needed for a meaningful check"
    for batch_size in (256, 7):  # one batch, and several right-padded chunks
        got = exact_match(base_model, tokenizer, prompts, answers, batch_size=batch_size)
        assert got.dtype == bool and got.shape == (len(prompts),)
        np.testing.assert_array_equal(got, expected)


def test_the_models_own_answers_are_all_exact_matches(base_model, tokenizer, sample_items, generations) -> None:
    own = [
        (item.prompt, tokenizer.decode(gen))
        for item, gen in zip(sample_items, generations, strict=True)
        if gen is not None and ids_of(tokenizer, tokenizer.decode(gen)) == gen
    ]
    assert len(own) >= len(sample_items) // 2
    prompts, answers = [p for p, _ in own], [a for _, a in own]
    assert exact_match(base_model, tokenizer, prompts, answers, batch_size=5).all()
    # An answer that goes on where the model ends its turn, or stops where the model goes on, is not a match.
    assert not exact_match(base_model, tokenizer, prompts, [a + "0" for a in answers]).any()
    shorter = [(p, a[:-1]) for p, a in own if len(a) > 1]
    assert not exact_match(base_model, tokenizer, [p for p, _ in shorter], [a for _, a in shorter]).any()


def test_exact_match_leaves_the_training_mode_alone(base_model, tokenizer) -> None:
    base_model.train()
    try:
        exact_match(base_model, tokenizer, ["add 1 2"], ["3"])
        assert base_model.training
    finally:
        base_model.eval()
    exact_match(base_model, tokenizer, ["add 1 2"], ["3"])
    assert not base_model.training


def test_exact_match_by_group_is_percent_per_group() -> None:
    correct = np.array([True, False, True, True, False])
    groups = ["b", "a", "b", "a", "a"]
    assert exact_match_by_group(correct, groups) == pytest.approx({"a": 100 / 3, "b": 100.0})
    with pytest.raises(ValueError):
        exact_match_by_group(correct, groups[:-1])
