"""Benchmarks as part of the spec: multiple choice in both layouts and both scoring modes, exact match by greedy
decoding, each equal item by item to a slow reference; bad files are errors naming file and line."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from tuneahead_ray.data import DatasetError
from tuneahead_ray.evaluation import (
    ExactMatchSpec,
    GreedyExactMatch,
    MultipleChoice,
    MultipleChoiceSpec,
    build_benchmark,
    default_benchmark_spec,
    load_benchmark_file,
    load_choice_items,
    normalise_answer,
)
from tuneahead_ray.evaluation import (
    testbed_benchmark as embedded_benchmark,
)
from tuneahead_ray.evaluation._choice import _letter_prompt
from tuneahead_ray.testbed import benchmark_items
from tuneahead_ray.yaml_config import ConfigError

LETTERS = "ABCD"


def _world_items(per_family: int = 8) -> list[dict]:
    """Multiple-choice items from the testbed's world: the benchmark's question, its answer and three other
    answers of the same family (families with at least four distinct answers)."""
    rng = random.Random(0)
    by_family: dict[str, list] = {}
    for item in benchmark_items():
        by_family.setdefault(item.family, []).append(item)
    items = []
    for family, family_items in sorted(by_family.items()):
        answers = sorted({item.answer for item in family_items})
        if len(answers) < 4:
            continue
        for item in family_items[:per_family]:
            choices = rng.sample([a for a in answers if a != item.answer], 3) + [item.answer]
            rng.shuffle(choices)
            items.append({"question": item.prompt, "choices": choices, "answer": choices.index(item.answer),
                          "subject": family})  # fmt: skip
    return items


@pytest.fixture(scope="module")
def hf_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("mc") / "world.jsonl"
    path.write_text("".join(json.dumps(item) + "\n" for item in _world_items()))
    return path


@pytest.fixture(scope="module")
def csv_file(tmp_path_factory) -> Path:
    """The same items as MMLU CSV files are laid out: no header, one file per subject (here: one, 'color')."""
    path = tmp_path_factory.mktemp("mmlu") / "color_test.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        for item in _world_items():
            if item["subject"] == "color":
                writer.writerow([item["question"], *item["choices"], LETTERS[item["answer"]]])
    return path


def _reference_loglikelihood(model, tokenizer, context: str, continuation: str) -> float:
    """Slow reference: one sequence at a time, log-softmax over the whole vocabulary at every position."""
    context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    assert whole[: len(context_ids)] == context_ids
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([whole])).logits[0].double()
    logprobs = torch.log_softmax(logits, dim=-1)
    return float(sum(logprobs[t - 1, whole[t]] for t in range(len(context_ids), len(whole))))


def _reference_predictions(model, tokenizer, items, scoring: str) -> list[int]:
    picks = []
    for item in items:
        if scoring == "letter":
            pairs = [(_letter_prompt(item), f" {LETTERS[i]}") for i in range(len(item.choices))]
        else:
            user = [{"role": "user", "content": item.question}]
            context = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
            pairs = [(context, choice) for choice in item.choices]
        picks.append(int(np.argmax([_reference_loglikelihood(model, tokenizer, c, x) for c, x in pairs])))
    return picks


@pytest.mark.parametrize("scoring", ["choice_text", "letter"])
def test_multiple_choice_picks_what_a_slow_reference_picks_item_by_item(
    base_model, tokenizer, hf_file, scoring
) -> None:
    benchmark = MultipleChoice.from_spec(MultipleChoiceSpec(kind="multiple_choice", path=hf_file, scoring=scoring))
    picks = benchmark.predictions(base_model, tokenizer)
    assert picks.tolist() == _reference_predictions(base_model, tokenizer, benchmark.items, scoring)
    score = benchmark.score(base_model, tokenizer)
    answers = np.array([item.answer for item in benchmark.items])
    assert score.score == pytest.approx(100 * float(np.mean(picks == answers)))
    assert set(score.breakdown) == {item.subject for item in benchmark.items} and score.items == len(answers)
    if scoring == "choice_text":  # the base model knows the world's common facts: far above chance (25%)
        assert score.score > 60


def test_the_mmlu_csv_layout_gives_the_same_items_as_the_hugging_face_layout(hf_file, csv_file) -> None:
    from_csv = load_choice_items(csv_file)
    from_hf = [item for item in load_choice_items(hf_file) if item.subject == "color"]
    assert from_csv == from_hf and {item.subject for item in from_csv} == {"color"}  # subject from the file name
    assert load_choice_items(csv_file.parent) == from_csv  # MMLU's test/ folder: every subject file in it


def test_exact_match_by_greedy_decoding_equals_decoding_each_item_alone(base_model, tokenizer, tmp_path) -> None:
    items = benchmark_items()[::8]
    path = tmp_path / "items.jsonl"
    path.write_text(
        "".join(
            json.dumps({"instruction": item.prompt, "output": f"  {item.answer.upper()} ", "group": item.family}) + "\n"
            for item in items
        )
    )
    benchmark = GreedyExactMatch.from_spec(ExactMatchSpec(kind="exact_match", path=path, batch_size=16))
    score = benchmark.score(base_model, tokenizer)
    reference = []
    for item in items:  # one at a time: no padding, plain generate
        head = tokenizer.apply_chat_template(
            [{"role": "user", "content": item.prompt}], tokenize=False, add_generation_prompt=True
        )
        ids = torch.tensor([tokenizer(head, add_special_tokens=False)["input_ids"]])
        out = base_model.generate(input_ids=ids, max_new_tokens=benchmark._budget(tokenizer), do_sample=False,
                                  eos_token_id=tokenizer.convert_tokens_to_ids(tokenizer.eos_token),
                                  pad_token_id=tokenizer.pad_token_id)  # fmt: skip
        text = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
        reference.append(normalise_answer(text) == normalise_answer(item.answer))
    assert score.score == pytest.approx(100 * float(np.mean(reference)))
    # Answers compare after normalisation: the upper-cased, padded references above still match; and greedy
    # decoding agrees with the testbed's teacher-forced exact match on these items.
    teacher_forced = embedded_benchmark()
    subset = type(teacher_forced)(tuple(i.prompt for i in items), tuple(i.answer for i in items), benchmark.groups)
    assert score.score == pytest.approx(subset.score(base_model, tokenizer).score)
    assert set(score.breakdown) == {item.family for item in items}


def test_answer_normalisation_is_strip_case_and_whitespace() -> None:
    assert normalise_answer("  Paris\n") == "paris"
    assert normalise_answer("New   York\tCity") == "new york city"
    assert normalise_answer("42") != normalise_answer("42.0")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("wrong_column.jsonl", '{"question": "q", "options": ["a", "b"], "answer": 0}\n', "line 1: missing field"),
        ("out_of_range.jsonl", '{"question": "q", "choices": ["a", "b"], "answer": 0}\n'
         '{"question": "q", "choices": ["a", "b"], "answer": 2}\n', "line 2: field 'answer' must be an index"),
        ("empty.jsonl", "", "no records"),
        ("truncated.json", '[{"question": "q", "choices": ["a", "b"], "answer": 0}, {"question": ', "invalid JSON"),
        ("letter.csv", "q,a,b,c,d,A\nq,a,b,c,d,E\n", "line 2: answer must be a letter A..D"),
        ("columns.csv", "q,a,B\n", "line 1: expected question, at least 2 choices"),
    ],
)  # fmt: skip
def test_bad_multiple_choice_files_are_errors_naming_file_and_line(tmp_path, name, content, message) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DatasetError, match=message) as caught:
        build_benchmark(MultipleChoiceSpec(kind="multiple_choice", path=path))
    assert str(path) in str(caught.value)


def test_bad_exact_match_files_are_errors_naming_file_and_record(tmp_path) -> None:
    path = tmp_path / "items.jsonl"
    path.write_text('{"instruction": "q", "output": "a"}\n{"instruction": "q"}\n')
    with pytest.raises(DatasetError, match=r"items.jsonl, line 2: missing field 'output'"):
        build_benchmark(ExactMatchSpec(kind="exact_match", path=path))


def test_benchmark_files_are_validated_field_by_field_with_paths_relative_to_them(tmp_path, hf_file) -> None:
    (tmp_path / "sub").mkdir()
    target = tmp_path / "sub" / "items.jsonl"
    target.write_bytes(hf_file.read_bytes())
    good = tmp_path / "sub" / "b.yaml"
    good.write_text("kind: multiple_choice\npath: items.jsonl\nscoring: letter\n")
    spec = load_benchmark_file(good)
    assert spec.path == target and spec.scoring == "letter"
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: multiple_choice\npath: items.jsonl\nscoring: logits\n")
    with pytest.raises(ConfigError, match=r"(?s)bad.yaml: invalid .*scoring"):
        load_benchmark_file(bad)
    bad.write_text("kind: mmlu\n")
    with pytest.raises(ConfigError, match="kind"):
        load_benchmark_file(bad)
    with pytest.raises(ValidationError):
        ExactMatchSpec(kind="exact_match", path=target, batch_size=0)


def test_a_model_directory_needs_a_benchmark_block(tmp_path) -> None:
    assert default_benchmark_spec("default").kind == "testbed"
    with pytest.raises(ValueError, match="benchmark:"):
        default_benchmark_spec(str(tmp_path))
