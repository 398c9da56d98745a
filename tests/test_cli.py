"""The ``tuneahead-ray`` command end to end: data generation, a real run, reproducible base builds, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tuneahead_ray.base_models import default_model_dir
from tuneahead_ray.cli import main
from tuneahead_ray.data import load_dataset
from tuneahead_ray.schemas import RunResult

HP_YAML = "lr: 0.003\nmax_steps: 20\nmax_seq_len: 64\nbatch_size: 8\nlora_r: 4\n"


@pytest.fixture
def data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    path = tmp_path / "data.jsonl"
    assert main(["testbed", "make-data", "--out", str(path), "--size", "50", "--seed", "3"]) == 0
    capsys.readouterr()
    return path


def _hp(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hp.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_make_data_writes_loadable_records(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "data.jsonl"
    assert main(["testbed", "make-data", "--out", str(path), "--size", "50", "--families", "add=1,count=1"]) == 0
    assert "50" in capsys.readouterr().out
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 50
    records = [json.loads(line) for line in lines]
    assert {r["family"] for r in records} == {"add", "count"}
    table = load_dataset(path)
    assert table.num_rows == 50
    assert table.column("prompt").to_pylist() == [r["messages"][0]["content"] for r in records]
    assert table.column("response").to_pylist() == [r["messages"][1]["content"] for r in records]


def test_make_data_knobs_reach_the_generator(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    argv = ["testbed", "make-data", "--out", str(path), "--size", "40", "--off-target", "1", "--min-level", "2"]
    assert main([*argv, "--max-level", "3"]) == 0
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert {r["family"] for r in records} <= {"reverse", "shift", "chatter"}
    assert {r["level"] for r in records} <= {2, 3}


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--label-noise", "1.5"], "label_noise"),
        (["--families", "add=1,nope=2"], "nope"),
        (["--min-level", "4", "--max-level", "2"], "min_level"),
    ],
)
def test_make_data_rejects_bad_knobs(tmp_path: Path, capsys: pytest.CaptureFixture[str], extra, named) -> None:
    path = tmp_path / "data.jsonl"
    assert main(["testbed", "make-data", "--out", str(path), "--size", "5", *extra]) == 2
    assert named in capsys.readouterr().err
    assert not path.exists()


@pytest.mark.slow
def test_run_prints_and_writes_a_run_result(tmp_path: Path, data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "result.json"
    argv = ["run", "--data", str(data), "--hp", str(_hp(tmp_path, HP_YAML)), "--device", "cpu", "--out", str(out)]
    assert main(argv) == 0
    printed = RunResult.model_validate_json(capsys.readouterr().out)
    assert RunResult.model_validate_json(out.read_text(encoding="utf-8")) == printed
    assert printed.steps == 20 and printed.hp.max_steps == 20 and printed.hp.lr == 0.003
    assert printed.hp.lora_r == 4 and printed.hp.max_seq_len == 64
    assert printed.num_examples == 50
    assert printed.dataset == str(data.resolve()) and printed.model == "default"
    assert not printed.diverged and len(printed.loss_curve) == 20
    assert 0 <= printed.score <= 100 and 0 <= printed.base_score <= 100


def _fails(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    # A progress bar may already be on stderr when the model or device turns out to be bad.
    assert "error: " in captured.err
    return captured.err[captured.err.index("error: ") :]


def test_run_rejects_a_negative_lr(tmp_path: Path, data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hp = _hp(tmp_path, "lr: -1\nmax_steps: 20\n")
    err = _fails(["run", "--data", str(data), "--hp", str(hp)], capsys)
    assert "'lr'" in err and str(hp) in err


def test_run_rejects_an_unknown_target_module(tmp_path: Path, data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hp = _hp(tmp_path, "target_modules: [q_proj, qkv_proj]\n")
    err = _fails(["run", "--data", str(data), "--hp", str(hp)], capsys)
    assert "qkv_proj" in err and "target_modules" in err and str(hp) in err


def test_run_names_the_line_of_a_yaml_syntax_error(
    tmp_path: Path, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hp = _hp(tmp_path, "lr: 0.003\nmax_steps: 20\n  seed: 1\n")
    err = _fails(["run", "--data", str(data), "--hp", str(hp)], capsys)
    assert "line 3" in err and str(hp) in err and "YAML" in err


def test_run_rejects_a_missing_hp_file(tmp_path: Path, data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hp = tmp_path / "nope.yaml"
    err = _fails(["run", "--data", str(data), "--hp", str(hp)], capsys)
    assert str(hp) in err and "not found" in err


def test_run_rejects_a_missing_data_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.jsonl"
    err = _fails(["run", "--data", str(missing), "--hp", str(_hp(tmp_path, HP_YAML))], capsys)
    assert str(missing) in err and "not found" in err


def test_run_names_the_bad_jsonl_line(tmp_path: Path, data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = data.read_text(encoding="utf-8").splitlines()
    lines[6] = '{"messages": [{"role": "user", "content": "add 1 2"}'
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    err = _fails(["run", "--data", str(data), "--hp", str(_hp(tmp_path, HP_YAML))], capsys)
    assert "line 7" in err and str(data) in err


def test_run_rejects_a_model_dir_without_config(tmp_path: Path, data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = Path(shutil.copytree(default_model_dir(), tmp_path / "model"))
    (model / "config.json").unlink()
    argv = ["run", "--data", str(data), "--hp", str(_hp(tmp_path, HP_YAML)), "--model", str(model), "--device", "cpu"]
    err = _fails(argv, capsys)
    assert str(model) in err and "config.json" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_run_rejects_cuda_without_a_gpu(tmp_path: Path, data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _fails(["run", "--data", str(data), "--hp", str(_hp(tmp_path, HP_YAML)), "--device", "cuda"], capsys)
    assert "CUDA" in err


@pytest.mark.slow
def test_build_base_is_reproducible_and_loads_with_auto_classes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    assert main(["testbed", "build-base", "--out", str(first), "--steps", "3"]) == 0
    assert main(["testbed", "build-base", "--out", str(second), "--steps", "3"]) == 0
    assert str(second) in capsys.readouterr().out
    weights = (first / "model.safetensors").read_bytes()
    assert weights == (second / "model.safetensors").read_bytes()
    assert weights != (default_model_dir() / "model.safetensors").read_bytes(), "3 steps cannot equal the shipped model"

    tokenizer = AutoTokenizer.from_pretrained(first)
    model = AutoModelForCausalLM.from_pretrained(first)
    assert type(model).__name__ == "Qwen2ForCausalLM"
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "add 1 2"}], tokenize=False, add_generation_prompt=True
    )
    ids = tokenizer(text + "3" + tokenizer.eos_token, return_tensors="pt", add_special_tokens=False)["input_ids"]
    assert ids[0, -1].item() == tokenizer.eos_token_id == model.config.eos_token_id
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    assert logits.shape == (1, ids.shape[1], model.config.vocab_size)
    assert torch.isfinite(logits).all()


def _benchmark_files(tmp_path: Path) -> dict[str, Path]:
    """A benchmark YAML of each kind, with its items file beside it (items from the testbed's world)."""
    from tuneahead_ray.testbed import benchmark_items

    items = [item for item in benchmark_items() if item.family in ("color", "home")][::10]
    answers = sorted({item.answer for item in items})
    (tmp_path / "qa.jsonl").write_text(
        "".join(json.dumps({"instruction": i.prompt, "output": i.answer, "group": i.family}) + "\n" for i in items)
    )
    mc = []
    for n, item in enumerate(items):
        choices = [item.answer, *[a for a in answers if a != item.answer][n % 3 : n % 3 + 3]]
        choices = choices[n % 4 :] + choices[: n % 4]
        mc.append({"question": item.prompt, "choices": choices, "answer": choices.index(item.answer),
                   "subject": item.family})  # fmt: skip
    (tmp_path / "mc.jsonl").write_text("".join(json.dumps(row) + "\n" for row in mc))
    files = {
        "testbed": "kind: testbed\n",
        "exact_match": "kind: exact_match\npath: qa.jsonl\n",
        "multiple_choice": "kind: multiple_choice\npath: mc.jsonl\n",
        "letter": "kind: multiple_choice\npath: mc.jsonl\nscoring: letter\n",
    }
    for name, text in files.items():
        (tmp_path / f"{name}.yaml").write_text(text)
    return {name: tmp_path / f"{name}.yaml" for name in files}


@pytest.mark.slow
def test_run_scores_on_the_benchmark_it_is_given(tmp_path: Path, data: Path, capsys) -> None:
    hp = _hp(tmp_path, HP_YAML)
    scores = {}
    for name, benchmark in _benchmark_files(tmp_path).items():
        out = tmp_path / f"{name}.json"
        argv = ["run", "--data", str(data), "--hp", str(hp), "--benchmark", str(benchmark), "--device", "cpu"]
        assert main([*argv, "--out", str(out)]) == 0
        result = RunResult.model_validate_json(out.read_text())
        scores[name] = result
        assert 0 <= result.score <= 100 and 0 <= result.base_score <= 100
    assert set(scores["testbed"].per_family) == {"add", "code", "color", "compare", "count", "home"}
    for name in ("exact_match", "multiple_choice", "letter"):  # the items file's own groups / subjects
        assert set(scores[name].per_family) == {"color", "home"}
    assert scores["multiple_choice"].base_score > 50  # the base model knows these facts: above chance (25%)
    assert scores["testbed"].loss_curve == scores["exact_match"].loss_curve  # the same run, scored differently


def test_run_rejects_a_bad_benchmark_file_before_training(tmp_path: Path, data: Path, capsys) -> None:
    (tmp_path / "mc.jsonl").write_text('{"question": "q", "choices": ["a", "b"], "answer": 5}\n')
    benchmark = tmp_path / "b.yaml"
    benchmark.write_text("kind: multiple_choice\npath: mc.jsonl\n")
    err = _fails(["run", "--data", str(data), "--hp", str(_hp(tmp_path, HP_YAML)), "--benchmark", str(benchmark)],
                 capsys)  # fmt: skip
    assert "mc.jsonl, line 1: field 'answer' must be an index" in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--runs", "0"], "--runs: must be at least 1, got 0"),
        (["--runs", "3", "--gpu-hours", "-1"], "--gpu-hours: must be positive, got -1.0"),
        (["--runs", "3", "--gpu-hours", "2"], "--gpu-hours: a budget applies to a grid's corpus (--grid)"),
        (["--runs", "3", "--strategy", "decision"], "--strategy: active selection applies to a grid's corpus (--grid)"),
        (["--runs", "3", "--batch", "0"], "--batch: must be at least 1, got 0"),
    ],
)
def test_corpus_build_rejects_bad_sizes_and_budgets(tmp_path: Path, extra: list[str], message: str, capsys) -> None:
    assert message in _fails(["corpus", "build", "--out", str(tmp_path / "corpus"), *extra], capsys)
    assert not (tmp_path / "corpus").exists()  # nothing started
