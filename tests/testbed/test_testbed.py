"""Testbed task families, the fixed benchmark and the dataset generator's quality knobs.

Answers are checked by recomputing them from the prompt (skill and off-target families) or against the facts
the family itself reports (knowledge families), never against values copied from a run.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter, defaultdict
from functools import cache

import pytest
from pydantic import ValidationError

from tuneahead_ray.testbed import (
    BENCHMARK_FAMILIES,
    FAMILIES,
    MAX_LEVEL,
    OFF_TARGET_FAMILIES,
    DataSpec,
    benchmark_items,
    family,
    generate_records,
)

LEVELS = range(1, MAX_LEVEL + 1)
SKILLS = ("add", "count", "compare")
KNOWLEDGE = ("color", "home", "code")
_KNOWLEDGE_PREFIX = {"color": "color of ", "home": "home of ", "code": "code of "}
#: Operand digit counts of ``add`` per level, as documented in the family.
_ADD_DIGITS = {1: (1, 1), 2: (2, 1), 3: (2, 2), 4: (3, 2), 5: (3, 3)}
_SYLLABLE_PAIR = r"[a-z]{4}"


@cache
def knowledge_facts() -> dict[tuple[str, int], dict[str, str]]:
    """(family, level) -> {entity: answer}, learnt by sampling each family far more often than it has entities."""
    facts: dict[tuple[str, int], dict[str, str]] = {}
    for name in KNOWLEDGE:
        for level in LEVELS:
            rng = random.Random(1000 + level)
            table: dict[str, str] = {}
            for _ in range(400):
                prompt, answer = FAMILIES[name].sample(rng, level)
                entity = prompt.removeprefix(_KNOWLEDGE_PREFIX[name])
                assert table.setdefault(entity, answer) == answer, f"{name}: {entity} has two answers"
            facts[name, level] = table
    return facts


def _digits(text: str, count: int) -> bool:
    return text.isdigit() and len(text) == count and (count == 1 or text[0] != "0")


def expected_answer(name: str, level: int, prompt: str) -> str | None:
    """The correct answer to a well-formed ``prompt`` of family/level, or None when the prompt is malformed."""
    if name == "add":
        match = re.fullmatch(r"add (\d+) (\d+)", prompt)
        digits_a, digits_b = _ADD_DIGITS[level]
        if match and _digits(match[1], digits_a) and _digits(match[2], digits_b):
            return str(int(match[1]) + int(match[2]))
    elif name == "count":
        alphabet = "abc" if level < 3 else "abcd"
        match = re.fullmatch(rf"count ([{alphabet}]) in ([{alphabet}]+)", prompt)
        if match and len(match[2]) == 2 * level + 1:
            return str(match[2].count(match[1]))
    elif name == "compare":
        match = re.fullmatch(r"compare (\d+) (\d+)", prompt)
        if match and _digits(match[1], level) and _digits(match[2], level) and match[1] != match[2]:
            return "less" if int(match[1]) < int(match[2]) else "more"
    elif name in KNOWLEDGE:
        if prompt.startswith(_KNOWLEDGE_PREFIX[name]):
            return knowledge_facts()[name, level].get(prompt.removeprefix(_KNOWLEDGE_PREFIX[name]))
    elif name == "reverse":
        match = re.fullmatch(r"reverse ([a-j]+)", prompt)
        if match and len(match[1]) == level + 1:
            return match[1][::-1]
    elif name == "shift":
        match = re.fullmatch(r"shift ([a-y]+)", prompt)
        if match and len(match[1]) == level + 1:
            return "".join(chr(ord(ch) + 1) for ch in match[1])
    return None


def is_clean(name: str, level: int, prompt: str, answer: str) -> bool:
    """A well-formed prompt of the family and level with its correct answer (chatter: well-formed on both sides)."""
    if name == "chatter":
        words = rf"{_SYLLABLE_PAIR}(?: {_SYLLABLE_PAIR})"
        return bool(re.fullmatch(rf"say {words}{{{level - 1}}}", prompt)) and bool(
            re.fullmatch(rf"{words}{{0,2}}", answer)
        )
    return expected_answer(name, level, prompt) == answer


def pair(record: dict) -> tuple[str, str]:
    user, assistant = record["messages"]
    assert (user["role"], assistant["role"]) == ("user", "assistant")
    return user["content"], assistant["content"]


# ------------------------------------------------------------------------------------------------ families


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_family_is_deterministic_under_a_seed_and_well_formed(name: str, level: int) -> None:
    fam = family(name)

    def draw(seed: int) -> list[tuple[str, str]]:
        rng = random.Random(seed)
        return [fam.sample(rng, level) for _ in range(30)]

    first = draw(7)
    assert draw(7) == first
    for prompt, answer in first:
        assert isinstance(prompt, str) and isinstance(answer, str)
        assert prompt.strip() and answer.strip()
        assert is_clean(name, level, prompt, answer), (prompt, answer)
    assert draw(8) != first, "the sample does not depend on the rng"


@pytest.mark.parametrize("name", SKILLS)
def test_skill_answers_are_correct_across_many_samples(name: str) -> None:
    rng = random.Random(3)
    for level in LEVELS:
        for _ in range(300):
            prompt, answer = FAMILIES[name].sample(rng, level)
            assert expected_answer(name, level, prompt) == answer, (level, prompt, answer)


@pytest.mark.parametrize("name", KNOWLEDGE)
def test_knowledge_is_consistent_and_levels_are_disjoint_popularity_bands(name: str) -> None:
    # Fresh rngs, different from the ones that built the fact table: every entity keeps its answer.
    for level in LEVELS:
        for seed in range(20):
            prompt, answer = FAMILIES[name].sample(random.Random(seed), level)
            assert expected_answer(name, level, prompt) == answer
    bands = [set(knowledge_facts()[name, level]) for level in LEVELS]
    assert all(len(band) > 1 for band in bands)
    assert len(set().union(*bands)) == sum(len(band) for band in bands), "an entity appears at two levels"
    # The three knowledge families describe the same world of entities.
    assert bands == [set(knowledge_facts()[KNOWLEDGE[0], level]) for level in LEVELS]


def test_knowledge_families_have_varied_answers() -> None:
    for name in KNOWLEDGE:
        answers = {a for level in LEVELS for a in knowledge_facts()[name, level].values()}
        assert len(answers) > 3, f"{name} answers are (nearly) constant: {answers}"


@pytest.mark.parametrize("level", [0, -1, MAX_LEVEL + 1, 100])
@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_level_out_of_range_raises(name: str, level: int) -> None:
    with pytest.raises(ValueError, match=f"level must be in 1..{MAX_LEVEL}"):
        FAMILIES[name].sample(random.Random(0), level)


def test_family_lookup_and_targets() -> None:
    assert {f.name for f in BENCHMARK_FAMILIES} == set(SKILLS + KNOWLEDGE)
    assert all(f.on_target for f in BENCHMARK_FAMILIES)
    assert not any(f.on_target for f in OFF_TARGET_FAMILIES)
    with pytest.raises(ValueError, match="nope") as info:
        family("nope")
    assert "add" in str(info.value)


# ----------------------------------------------------------------------------------------------- benchmark


def test_benchmark_is_deterministic_complete_and_correct() -> None:
    items = benchmark_items()
    benchmark_items.cache_clear()
    regenerated = benchmark_items()
    assert regenerated is not items and regenerated == items
    assert len(items) == 6 * 5 * 160  # MMLU-like size: 4,800 items
    cells = Counter((item.family, item.level) for item in items)
    assert cells == {(f.name, level): 160 for f in BENCHMARK_FAMILIES for level in LEVELS}
    for item in items:
        assert item.answer.strip()
        assert is_clean(item.family, item.level, item.prompt, item.answer), item
    prompts_per_cell = defaultdict(set)
    for item in items:
        prompts_per_cell[item.family, item.level].add(item.prompt)
    assert all(len(prompts) > 1 for prompts in prompts_per_cell.values())


def test_benchmarks_are_nested_so_the_first_480_items_are_kept() -> None:
    small, first, large = benchmark_items(2), benchmark_items(16), benchmark_items()
    assert len(small) == 6 * 5 * 2 and len(first) == 480
    # Every cell starts with the 480-item benchmark's cell (or a prefix of it).
    for cell in range(6 * 5):
        assert small[2 * cell : 2 * cell + 2] == first[16 * cell : 16 * cell + 2]
        assert first[16 * cell : 16 * cell + 16] == large[160 * cell : 160 * cell + 16]
    assert (first[0].prompt, first[0].answer) == ("add 7 1", "8")  # the 480-item benchmark of earlier corpora
    # The items beyond the first 16 of a cell come from another stream: not a repeat of them.
    assert large[16:32] != large[:16]
    with pytest.raises(ValueError, match="items_per_cell"):
        benchmark_items(0)


# ----------------------------------------------------------------------------------------------- generator


def test_size_layout_and_determinism() -> None:
    spec = DataSpec(size=37, seed=4)
    records = generate_records(spec)
    assert len(records) == 37
    for record in records:
        assert set(record) == {"messages", "family", "level"}
        prompt, answer = pair(record)
        assert is_clean(record["family"], record["level"], prompt, answer)
    assert generate_records(DataSpec(size=37, seed=4)) == records
    assert generate_records(DataSpec(size=37, seed=5)) != records
    assert {r["family"] for r in generate_records(DataSpec(size=600))} == set(SKILLS + KNOWLEDGE)


def test_full_label_noise_makes_every_answer_wrong() -> None:
    records = generate_records(DataSpec(size=1200, label_noise=1.0, seed=1))
    for record in records:
        prompt, answer = pair(record)
        correct = expected_answer(record["family"], record["level"], prompt)
        assert correct is not None, f"the prompt itself was damaged: {prompt!r}"
        assert answer != correct, record
    assert {r["family"] for r in records} >= set(SKILLS)


def test_partial_label_noise_hits_about_that_share() -> None:
    records = generate_records(DataSpec(size=3000, label_noise=0.3, seed=2))
    wrong = sum(not is_clean(r["family"], r["level"], *pair(r)) for r in records)
    assert 0.25 < wrong / len(records) < 0.35


def _duplicate_share(records: list[dict]) -> float:
    seen: set[str] = set()
    repeats = 0
    for record in records:
        key = json.dumps(record, sort_keys=True)
        repeats += key in seen
        seen.add(key)
    return repeats / len(records)


def test_duplication_repeats_about_that_share_of_records() -> None:
    # Hard additions have ~800k distinct prompts, so repeats come from the knob, not from chance.
    spec = {"size": 3000, "families": {"add": 1.0}, "min_level": 5, "seed": 3}
    assert _duplicate_share(generate_records(DataSpec(**spec))) < 0.01
    duplicated = generate_records(DataSpec(**spec, duplication=0.5))
    assert 0.45 < _duplicate_share(duplicated) < 0.55


def test_full_off_target_draws_only_off_target_families() -> None:
    records = generate_records(DataSpec(size=500, off_target=1.0, seed=5))
    off_target = {f.name for f in OFF_TARGET_FAMILIES}
    assert {r["family"] for r in records} == off_target
    for record in records:
        assert is_clean(record["family"], record["level"], *pair(record)), record


def test_partial_off_target_share() -> None:
    records = generate_records(DataSpec(size=3000, off_target=0.2, seed=6))
    share = sum(not FAMILIES[r["family"]].on_target for r in records) / len(records)
    assert 0.16 < share < 0.24


def test_level_range_is_respected_and_matches_the_prompts() -> None:
    records = generate_records(DataSpec(size=800, min_level=2, max_level=3, seed=7))
    assert {r["level"] for r in records} == {2, 3}
    for record in records:
        assert is_clean(record["family"], record["level"], *pair(record)), record
    assert {r["level"] for r in generate_records(DataSpec(size=200, min_level=4, max_level=4))} == {4}


def test_family_mix() -> None:
    only_add = generate_records(DataSpec(size=300, families={"add": 1}, seed=8))
    assert {r["family"] for r in only_add} == {"add"}
    assert all(pair(r)[0].startswith("add ") for r in only_add)
    mixed = generate_records(DataSpec(size=4000, families={"add": 3, "count": 1, "code": 0}, seed=8))
    counts = Counter(r["family"] for r in mixed)
    assert set(counts) == {"add", "count"}
    assert 0.71 < counts["add"] / len(mixed) < 0.79


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"families": {"add": 1, "nope": 1}}, "nope"),
        ({"families": {"add": 1, "count": -0.5}}, "count"),
        ({"families": {"add": 0}}, "families"),
        ({"min_level": 4, "max_level": 2}, "min_level"),
        ({"min_level": 0}, "min_level"),
        ({"max_level": MAX_LEVEL + 1}, "max_level"),
        ({"label_noise": 1.5}, "label_noise"),
        ({"duplication": 1.0}, "duplication"),
        ({"size": 0}, "size"),
        ({"noise": 0.1}, "noise"),
    ],
)
def test_bad_specs_name_the_field_or_family(kwargs: dict, named: str) -> None:
    with pytest.raises(ValidationError) as info:
        DataSpec(**kwargs)
    assert named in str(info.value)


def test_full_format_corruption_damages_every_record() -> None:
    # Corruption draws extra random numbers, so records after the first are not the clean ones of the same seed;
    # instead every record is checked against what a clean record of its family and level must look like.
    clean = generate_records(DataSpec(size=800, seed=9))
    assert all(is_clean(r["family"], r["level"], *pair(r)) for r in clean)
    corrupted = generate_records(DataSpec(size=800, format_corruption=1.0, seed=9))
    damaged = [not is_clean(r["family"], r["level"], *pair(r)) for r in corrupted]
    assert all(damaged), [pair(r) for r, bad in zip(corrupted, damaged, strict=True) if not bad][:5]
    # Both sides get corrupted: some records keep a well-formed prompt (answer damaged), some do not.
    prompt_ok = [expected_answer(r["family"], r["level"], pair(r)[0]) is not None for r in corrupted]
    assert 0.5 < sum(prompt_ok) / len(corrupted) < 0.95
    # The first record draws the same numbers up to the corruption, so it is the clean first record, mangled.
    assert (corrupted[0]["family"], corrupted[0]["level"]) == (clean[0]["family"], clean[0]["level"])
    assert pair(corrupted[0]) != pair(clean[0])


def test_partial_format_corruption_share() -> None:
    records = generate_records(DataSpec(size=3000, format_corruption=0.25, seed=10))
    share = sum(not is_clean(r["family"], r["level"], *pair(r)) for r in records) / len(records)
    assert 0.20 < share < 0.30


# ----------------------------------------------------------------------------------------------- proxies


def test_default_proxy_is_under_8_percent_of_the_model_and_pretrained_otherwise() -> None:
    from tuneahead_ray.base_models import default_model_dir, default_proxy_dir
    from tuneahead_ray.testbed._pretrain import PRETRAIN_MIXES

    def parameters(directory) -> int:
        config = json.loads((directory / "config.json").read_text())
        from transformers import Qwen2Config, Qwen2ForCausalLM

        return sum(p.numel() for p in Qwen2ForCausalLM(Qwen2Config(**config)).parameters())

    base = parameters(default_model_dir())
    proxy, strong = parameters(default_proxy_dir("proxy")), parameters(default_proxy_dir("strong-proxy"))
    assert proxy / base <= 0.08  # ProxyLM's proxies are 2-8% of the target
    assert 0.15 < strong / base < 0.25  # the strong proxy: 19%, kept as an extra baseline
    assert PRETRAIN_MIXES["proxy"] != PRETRAIN_MIXES["base"] == PRETRAIN_MIXES["strong-proxy"]
    assert PRETRAIN_MIXES["proxy"].seed != PRETRAIN_MIXES["base"].seed
