"""Static descriptors on hand-made rows with known answers, the map/reduce split, the testbed knobs and the cache.

No Ray here: the pipeline runs with ``use_ray=False`` (the same callables the Ray pipeline maps over batches).
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import tuneahead_ray.descriptors.pipeline as pipeline
from tuneahead_ray.base_models import default_model_dir, load_tokenizer
from tuneahead_ray.data import write_jsonl
from tuneahead_ray.descriptors import (
    RowFeaturizer,
    conflicting_response_rate,
    exact_duplicate_rate,
    groundedness,
    instruction_complexity,
    near_duplicate_rate,
    ngram_repetition,
    prompt_words_mean,
    row_instruction_complexity,
    row_ngram_repetition,
    row_stats,
    special_char_ratio,
    token_length_stats,
    type_token_ratio,
)
from tuneahead_ray.descriptors._common import counting_tokenizer
from tuneahead_ray.descriptors.model_pass import (
    ModelScorer,
    describe_sample,
    embedding_outlier_ratio,
    model_stats,
    sample_rows,
)
from tuneahead_ray.descriptors.pipeline import compute_descriptors, describe_table
from tuneahead_ray.features import MODEL_FEATURES, STATIC_FEATURES
from tuneahead_ray.testbed import DataSpec, generate_records


def _table(pairs: list[tuple[str, str]]) -> pa.Table:
    prompts, responses = zip(*pairs, strict=True)
    return pa.table({"prompt": list(prompts), "response": list(responses)})


def _testbed_table(size: int = 600, seed: int = 3, **knobs: float) -> pa.Table:
    records = generate_records(DataSpec(size=size, seed=seed, **knobs))
    return _table([(r["messages"][0]["content"], r["messages"][1]["content"]) for r in records])


def _long_text(seed: int, words: int = 100) -> str:
    rng = random.Random(seed)
    return " ".join(f"w{rng.randrange(10_000)}" for _ in range(words))


@pytest.fixture(scope="module")
def featurize() -> RowFeaturizer:
    return RowFeaturizer("default")


@pytest.fixture(scope="module")
def scorer() -> ModelScorer:
    return ModelScorer("default", device="cpu")


# ------------------------------------------------------------------------------------------ duplicates


def test_exact_duplicate_rate_counts_copies_beyond_the_first() -> None:
    rows = [(f"question {i}", f"answer {i}") for i in range(8)]
    table = _table(rows + [rows[3], rows[3]])  # 10 rows, one of them present 3 times
    assert exact_duplicate_rate(table) == pytest.approx(0.2)


def test_exact_duplicate_rate_tells_prompt_and_response_apart() -> None:
    assert exact_duplicate_rate(_table([("ab", "c"), ("a", "bc"), ("abc", "")])) == 0.0


def test_near_duplicate_with_one_changed_word_counts_an_unrelated_row_does_not() -> None:
    text = _long_text(seed=1)
    edited = text.split()
    edited[50] = "changed"
    table = _table([(text, "the answer"), (" ".join(edited), "the answer"), (_long_text(seed=2), "the answer")])
    assert near_duplicate_rate(table) == pytest.approx(1 / 3)
    assert exact_duplicate_rate(table) == 0.0


def test_unrelated_rows_are_not_near_duplicates() -> None:
    table = _table([(_long_text(seed), "ok") for seed in range(20)])
    assert near_duplicate_rate(table) == 0.0


def test_near_duplicates_join_into_clusters_and_include_exact_copies() -> None:
    text = _long_text(seed=5)
    copy_with_punctuation = text.replace(" ", ", ", 3)  # same words, so the same shingles
    table = _table([(text, "a"), (text, "a"), (copy_with_punctuation, "a"), (_long_text(seed=6), "a")])
    assert exact_duplicate_rate(table) == pytest.approx(1 / 4)
    assert near_duplicate_rate(table) == pytest.approx(2 / 4)


def test_conflicting_responses_count_repeated_prompts_answered_in_more_than_one_way() -> None:
    rows = [("2+2?", "4"), ("2 + 2?", "4"), ("Capital of France?", "Paris"), ("capital of  france?", " paris"),
            ("3+3?", "6"), ("3+3?", "7"), ("3+3?", "6"), ("once", "only")]  # fmt: skip
    # The two France prompts differ only in case and spacing, and so do their answers: one prompt, agreeing. "3+3?"
    # is answered "6" and "7": it conflicts. "2+2?" and "2 + 2?" are two prompts (their words differ), each once.
    assert conflicting_response_rate(_table(rows)) == pytest.approx(1 / 2)
    assert conflicting_response_rate(_table([("a", "x"), ("a", "x"), ("b", "y")])) == 0.0
    assert conflicting_response_rate(_table([("a", "x"), ("b", "y")])) == 0.0  # no prompt repeats: no evidence
    assert conflicting_response_rate(_table([("a", "x"), ("a", "y"), ("b", "y"), ("b", "y")])) == 0.5


# ------------------------------------------------------------------------------------------------ text


def test_ngram_repetition_of_a_looping_response() -> None:
    # 3-grams: abc bca cab abc bca cab abc -> 7 n-grams, 3 distinct, 4 repeats.
    assert row_ngram_repetition([["a", "b", "c"] * 3]).tolist() == pytest.approx([4 / 7])
    table = _table([("q", "a b c a b c a b c"), ("q", "one two three four"), ("q", "too short")])
    assert ngram_repetition(table) == pytest.approx((4 / 7 + 0 + 0) / 3)


def test_type_token_ratio_is_case_insensitive() -> None:
    assert type_token_ratio(_table([("q", "The cat saw the dog")])) == pytest.approx(4 / 5)
    assert type_token_ratio(_table([("q", "The cat saw the dog"), ("q", "!!")])) == pytest.approx((0.8 + 1.0) / 2)


def test_special_char_ratio_pools_prompt_and_response_characters() -> None:
    # "a,b!" has 2 special of 4 characters; "c d" has 0 of 3 (a space is not special).
    assert special_char_ratio(_table([("a,b!", "c d")])) == pytest.approx(2 / 7)
    assert special_char_ratio(_table([("Grüße, 東京", "٣ éa")])) == pytest.approx(1 / 13)  # 9 + 4 characters


def test_groundedness_is_the_share_of_response_words_found_in_the_prompt() -> None:
    table = _table([("What is the capital of France?", "Paris is the capital"), ("copy this", "copy this")])
    assert groundedness(table) == pytest.approx((3 / 4 + 1.0) / 2)


@pytest.mark.parametrize(
    ("prompt", "markers"),
    [
        ("add two numbers", 0),
        ("Read this. Then answer the question", 1),
        ("add 3 and 4", 1),
        ("Do both:\n- wash\n- dry", 1),
        ("Steps follow. Do them:\n1) add 2\n2) stop", 3),
    ],
)
def test_instruction_complexity_markers(prompt: str, markers: int) -> None:
    assert row_instruction_complexity(_table([(prompt, "x")])).tolist() == pytest.approx([markers / 3])


def test_instruction_complexity_and_prompt_words_are_means_over_prompts() -> None:
    table = _table([("add 3 and 4", "7"), ("say hello", "hello")])
    assert instruction_complexity(table) == pytest.approx((1 / 3 + 0) / 2)
    assert prompt_words_mean(table) == pytest.approx(3.0)


def test_token_length_stats_with_the_byte_level_tokenizer() -> None:
    # The default tokenizer is byte-level: one token per ASCII character.
    stats = token_length_stats(_table([("abc", "x"), ("abcdef", "xy")]), load_tokenizer("default"))
    assert stats["prompt_tokens_mean"] == pytest.approx(4.5)
    assert stats["prompt_tokens_std"] == pytest.approx(1.5)
    assert stats["prompt_tokens_p50"] == pytest.approx(4.5)
    assert stats["prompt_tokens_p10"] == pytest.approx(3.3)
    assert stats["response_tokens_p90"] == pytest.approx(1.9)
    assert stats["total_tokens_mean"] == pytest.approx(6.0)
    assert stats["io_length_ratio"] == pytest.approx(9 / 3)


def test_counting_tokenizer_counts_exactly_as_the_transformers_tokenizer(tmp_path: Path) -> None:
    import shutil

    import tokenizers

    # Non-ASCII, whitespace, a long text, an added special token and a look-alike that is not one.
    rows = [("héllo wörld ✓ 日本", "ok\n\tdone"), ("", "x" * 3000), ("<|user|> 7 <|im_start|>", "  <|endoftext|>")]
    table = _table(rows)
    light = counting_tokenizer("default")
    assert isinstance(light, tokenizers.Tokenizer)  # no transformers/torch import in a Ray Data row actor
    full = token_length_stats(table, load_tokenizer("default"))
    assert token_length_stats(table, light) == full
    # A tokenizer_config that changes tokenization beyond tokenizer.json keeps the transformers tokenizer.
    model_dir = tmp_path / "model"
    shutil.copytree(default_model_dir(), model_dir)
    config_file = model_dir / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    for change in ({"split_special_tokens": True}, {"extra_special_tokens": ["<|tool|>"]}, {"legacy": False}):
        config_file.write_text(json.dumps({**config, **change}), encoding="utf-8")
        assert not isinstance(counting_tokenizer(model_dir), tokenizers.Tokenizer), change


# ------------------------------------------------------------------------------------------ model-based


def test_scorer_returns_one_finite_row_per_sampled_row(scorer: ModelScorer) -> None:
    sample = sample_rows(_testbed_table(size=40), size=24, seed=0)
    scores = scorer(sample)
    assert scores.column("sample_index").to_pylist() == list(range(24))
    assert np.isfinite(scores.column("log_perplexity").to_numpy()).all()
    assert (scores.column("log_perplexity").to_numpy() > 0).all()
    assert scores.column("embedding").type.list_size == scorer.model.config.hidden_size


def test_identical_prompt_and_response_have_similarity_one(scorer: ModelScorer) -> None:
    sample = sample_rows(_table([("say hello", "say hello"), ("", "x")]), size=2, seed=0)
    similarity = scorer(sample).column("io_similarity").to_numpy()
    assert similarity[0] == pytest.approx(1.0, abs=1e-5)
    assert -1.0 <= similarity[1] <= 1.0


def test_scores_do_not_depend_on_how_rows_are_batched(scorer: ModelScorer) -> None:
    sample = sample_rows(_testbed_table(size=50), size=30, seed=1)
    whole = model_stats(scorer(sample), seed=0)
    parts = model_stats(pa.concat_tables([scorer(sample.slice(20)), scorer(sample.slice(0, 20))]), seed=0)
    assert parts == pytest.approx(whole, abs=1e-5)


def test_reference_perplexity_is_lower_on_data_like_the_pretraining_data(scorer: ModelScorer) -> None:
    testbed = model_stats(scorer(sample_rows(_testbed_table(size=64), 64, 0)), seed=0)
    noise = _table([(_long_text(seed), _long_text(seed + 100, words=20)) for seed in range(64)])
    unfamiliar = model_stats(scorer(sample_rows(noise, 64, 0)), seed=0)
    assert testbed["reference_log_perplexity"] < unfamiliar["reference_log_perplexity"]


def test_wrong_labels_lower_base_answer_match_and_raise_the_high_loss_share(scorer: ModelScorer) -> None:
    clean = describe_sample(_testbed_table(size=200), scorer, sample_size=128)
    noisy = describe_sample(_testbed_table(size=200, label_noise=1.0), scorer, sample_size=128)
    assert clean["base_answer_match"] > noisy["base_answer_match"] + 0.1
    assert clean["base_token_agreement"] > noisy["base_token_agreement"]
    assert noisy["high_loss_share"] > clean["high_loss_share"] + 0.1


def test_exact_answer_match_and_token_agreement_of_an_answer_the_model_cannot_know(scorer: ModelScorer) -> None:
    values = describe_sample(_table([("add 1 1", "2"), ("add 1 1", "zqxjvkwp zqxjvkwp")]), scorer, sample_size=2)
    assert values["base_answer_match"] <= 0.5  # the gibberish answer is never reproduced
    assert 0.0 <= values["base_token_agreement"] < 1.0
    assert values["high_loss_share"] >= 0.5


def test_describe_sample_equals_the_model_part_of_describe_table(scorer: ModelScorer) -> None:
    table = _testbed_table(size=300)
    whole = describe_table(table, use_ray=False, sample_size=32, device="cpu")
    assert describe_sample(table, scorer, sample_size=32) == pytest.approx({k: whole[k] for k in MODEL_FEATURES})


def test_embedding_outlier_ratio_flags_far_points() -> None:
    rng = np.random.default_rng(0)
    inliers = rng.normal(size=(200, 8))
    with_outliers = np.vstack([inliers, np.full((6, 8), 25.0) + rng.normal(size=(6, 8))])
    ratio = embedding_outlier_ratio(with_outliers, seed=0)
    assert 6 / 206 <= ratio < 0.2
    assert embedding_outlier_ratio(with_outliers, seed=0) == ratio


def test_embedding_outlier_ratio_without_spread_is_zero() -> None:
    assert embedding_outlier_ratio(np.ones((50, 8)), seed=0) == 0.0
    assert embedding_outlier_ratio(np.ones((1, 8)), seed=0) == 0.0


def test_sample_is_seeded_bounded_and_in_table_order() -> None:
    table = _testbed_table(size=100)
    first, again = sample_rows(table, 30, seed=7), sample_rows(table, 30, seed=7)
    assert first.equals(again)
    assert not first.equals(sample_rows(table, 30, seed=8))
    assert sample_rows(table, 500, seed=0).num_rows == 100


# ------------------------------------------------------------------------------------- map/reduce split


def test_row_stats_equal_the_dataset_level_functions(featurize: RowFeaturizer) -> None:
    table = _testbed_table(duplication=0.3, format_corruption=0.3)
    stats = row_stats(featurize(table))
    assert stats["num_rows"] == table.num_rows
    assert stats["special_char_ratio"] == special_char_ratio(table)
    assert stats["type_token_ratio"] == type_token_ratio(table)
    assert stats["ngram_repetition"] == ngram_repetition(table)
    assert stats["groundedness"] == groundedness(table)
    assert stats["instruction_complexity"] == instruction_complexity(table)
    assert stats["prompt_words_mean"] == prompt_words_mean(table)
    assert stats["exact_duplicate_rate"] == exact_duplicate_rate(table)
    assert stats["near_duplicate_rate"] == near_duplicate_rate(table)
    assert stats["conflicting_response_rate"] == conflicting_response_rate(table)
    lengths = token_length_stats(table, featurize.tokenizer)
    assert {name: stats[name] for name in lengths} == lengths


def test_row_stats_do_not_depend_on_blocks_or_their_order(featurize: RowFeaturizer) -> None:
    table = _testbed_table(duplication=0.5)
    whole = row_stats(featurize(table))
    blocks = [featurize(table.slice(start, 97)) for start in range(0, table.num_rows, 97)]
    assert row_stats(pa.concat_tables(blocks[::-1])) == whole


def test_near_duplicates_include_all_exact_duplicates(featurize: RowFeaturizer) -> None:
    stats = row_stats(featurize(_testbed_table(duplication=0.4, format_corruption=0.5)))
    assert stats["near_duplicate_rate"] >= stats["exact_duplicate_rate"] > 0


# -------------------------------------------------------------------------------------- testbed knobs


@pytest.fixture(scope="module")
def clean(featurize: RowFeaturizer) -> dict[str, float]:
    return row_stats(featurize(_testbed_table()))


def test_duplication_raises_both_duplicate_rates(featurize: RowFeaturizer, clean: dict[str, float]) -> None:
    duplicated = row_stats(featurize(_testbed_table(duplication=0.8)))
    assert duplicated["exact_duplicate_rate"] > clean["exact_duplicate_rate"] + 0.4
    assert duplicated["near_duplicate_rate"] > clean["near_duplicate_rate"] + 0.4


def test_label_noise_raises_conflicting_responses_and_duplication_does_not(
    featurize: RowFeaturizer, clean: dict[str, float]
) -> None:
    assert clean["conflicting_response_rate"] < 0.05  # a clean testbed task has one answer per prompt
    noisy = row_stats(featurize(_testbed_table(label_noise=0.3)))
    duplicated = row_stats(featurize(_testbed_table(duplication=0.8)))
    assert noisy["conflicting_response_rate"] > clean["conflicting_response_rate"] + 0.2
    assert duplicated["conflicting_response_rate"] < 0.05


def test_format_corruption_raises_special_characters(featurize: RowFeaturizer, clean: dict[str, float]) -> None:
    corrupted = row_stats(featurize(_testbed_table(format_corruption=1.0)))
    assert corrupted["special_char_ratio"] > clean["special_char_ratio"] + 0.02


def test_off_target_data_has_longer_answers_and_simpler_prompts(
    featurize: RowFeaturizer, clean: dict[str, float]
) -> None:
    off_target = row_stats(featurize(_testbed_table(off_target=1.0)))
    assert off_target["response_tokens_mean"] > clean["response_tokens_mean"] + 1
    assert off_target["io_length_ratio"] < clean["io_length_ratio"]
    assert off_target["instruction_complexity"] < clean["instruction_complexity"]


# ------------------------------------------------------------------------------------ pipeline + cache


def test_describe_table_returns_every_feature_in_order() -> None:
    values = describe_table(_testbed_table(size=300), use_ray=False, sample_size=32)
    assert tuple(values) == STATIC_FEATURES
    assert all(isinstance(v, float) and math.isfinite(v) for v in values.values())
    assert len(set(STATIC_FEATURES)) == len(STATIC_FEATURES)


def test_describe_table_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="empty"):
        describe_table(_testbed_table(size=5).slice(0, 0), use_ray=False)
    with pytest.raises(ValueError, match="sample_size"):
        describe_table(_testbed_table(size=5), use_ray=False, sample_size=0)
    with pytest.raises(ValueError, match=r"missing \['response'\]"):
        describe_table(pa.table({"prompt": ["a"], "answer": ["b"]}), use_ray=False)


def test_ray_pipeline_needs_a_running_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    with pytest.raises(RuntimeError, match=r"ray\.init"):
        describe_table(_testbed_table(size=5), use_ray=True)


def _dataset_file(tmp_path: Path, **knobs: float) -> Path:
    return write_jsonl(generate_records(DataSpec(size=120, seed=1, **knobs)), tmp_path / "data.jsonl")


def test_cache_returns_the_stored_vector_without_recomputing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data, cache = _dataset_file(tmp_path), tmp_path / "cache"
    first = compute_descriptors(data, use_ray=False, sample_size=16, cache_dir=cache)
    assert len(list(cache.glob("*.json"))) == 1
    assert not list(cache.glob("*.tmp"))

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("recomputed despite a cache entry")

    monkeypatch.setattr(pipeline, "describe_table", fail)
    renamed = data.rename(tmp_path / "renamed.jsonl")  # the key is the content, not the path
    assert compute_descriptors(renamed, use_ray=False, sample_size=16, cache_dir=cache) == first
    with pytest.raises(AssertionError, match="recomputed"):
        compute_descriptors(renamed, use_ray=False, sample_size=17, cache_dir=cache)


def test_unreadable_cache_entry_is_recomputed(tmp_path: Path) -> None:
    data, cache = _dataset_file(tmp_path), tmp_path / "cache"
    first = compute_descriptors(data, use_ray=False, sample_size=16, cache_dir=cache)
    (entry,) = cache.glob("*.json")
    entry.write_text('{"features": {"num_rows": 1.0}}', encoding="utf-8")
    assert compute_descriptors(data, use_ray=False, sample_size=16, cache_dir=cache) == first
    assert json.loads(entry.read_text(encoding="utf-8"))["features"] == first
