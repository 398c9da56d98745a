"""Real LoRA training on the embedded tiny Qwen2: what an adapter touches, what data quality does, divergence."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from peft.tuners.lora import LoraLayer

from tests._harness.faults import inject_at
from tuneahead_ray.base_models import load_model
from tuneahead_ray.probe import full_run
from tuneahead_ray.schemas import Candidate, DatasetRef, HyperParams, RunResult
from tuneahead_ray.testbed import DataSpec, generate_records, write_dataset
from tuneahead_ray.training import StepTrainer, attach_adapter, detach_adapter, encode_pairs

pytestmark = pytest.mark.slow  # real training, in this process: no Ray


def _base_name(peft_name: str) -> str:
    """The base model's own name of a parameter seen through the peft wrapper."""
    return peft_name.removeprefix("base_model.model.").replace(".base_layer.", ".")


def _lora_state(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters() if "lora_" in name}


def test_lora_training_changes_only_the_adapter_and_detach_restores_the_base(tokenizer) -> None:
    model = load_model("default", "cpu")
    snapshot = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    records = generate_records(DataSpec(size=64, seed=11))
    prompts = [r["messages"][0]["content"] for r in records]
    answers = [r["messages"][1]["content"] for r in records]
    pairs = encode_pairs(tokenizer, prompts, answers, max_seq_len=64)
    hp = HyperParams(lr=3e-3, lora_r=4, lora_alpha=8, batch_size=8, max_steps=10, warmup_ratio=0.0, max_seq_len=64)

    adapted = attach_adapter(model, hp)
    initial = _lora_state(adapted)
    num_layers, num_modules = model.config.num_hidden_layers, len(hp.target_modules)
    assert len(initial) == 2 * num_layers * num_modules  # lora_A and lora_B of every targeted linear layer
    trainable = {name for name, p in adapted.named_parameters() if p.requires_grad}
    assert trainable == set(initial)

    trainer = StepTrainer(adapted, pairs, hp, total_steps=10, pad_id=tokenizer.pad_token_id)
    steps = [trainer.step() for _ in range(10)]
    assert all(s.finite for s in steps)
    assert [s.step for s in steps] == list(range(1, 11))
    # Linear decay from the peak lr with no warmup.
    assert [s.lr for s in steps] == pytest.approx([hp.lr * (1 - k / 10) for k in range(10)])
    assert all(s.tokens > 0 for s in steps)

    trained = _lora_state(adapted)
    unchanged = [name for name in initial if torch.equal(initial[name], trained[name])]
    assert not unchanged, f"adapter weights that did not train: {unchanged}"

    base_now = {_base_name(name): tensor for name, tensor in adapted.state_dict().items() if "lora_" not in name}
    assert base_now.keys() == snapshot.keys()
    moved = [name for name in snapshot if not torch.equal(snapshot[name], base_now[name])]
    assert not moved, f"base weights changed by LoRA training: {moved}"

    base = detach_adapter(adapted)
    assert base is model
    assert not any("lora" in name for name, _ in base.named_modules())
    assert not any(isinstance(module, LoraLayer) for module in base.modules())
    restored = base.state_dict()
    assert restored.keys() == snapshot.keys()
    assert all(torch.equal(restored[name], snapshot[name]) for name in snapshot)

    # The base can take a fresh adapter again (the probe pool reuses one loaded model), seeded like the first.
    again = attach_adapter(base, hp)
    fresh = _lora_state(again)
    assert fresh.keys() == initial.keys()
    assert all(torch.equal(fresh[name], initial[name]) for name in initial)
    detach_adapter(again)


def _run(path: Path, hp: HyperParams, **kwargs) -> RunResult:
    return full_run(Candidate(model="default", dataset=DatasetRef(path=path), hp=hp), device="cpu", **kwargs)


@pytest.fixture(scope="module")
def clean_and_noisy(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunResult, RunResult]:
    folder = tmp_path_factory.mktemp("quality")
    clean = write_dataset(DataSpec(size=1500, seed=21), folder / "clean.jsonl")
    noisy = write_dataset(DataSpec(size=1500, seed=21, label_noise=1.0), folder / "noisy.jsonl")
    hp = HyperParams(lr=3e-3, max_steps=150, batch_size=16, max_seq_len=64, lora_r=8, lora_alpha=16)
    return _run(clean, hp), _run(noisy, hp)


def test_clean_data_beats_fully_mislabelled_data(clean_and_noisy: tuple[RunResult, RunResult]) -> None:
    clean, noisy = clean_and_noisy
    assert clean.base_score == noisy.base_score, "both runs start from the same base model and benchmark"
    assert clean.score >= noisy.score + 10
    assert noisy.score < noisy.base_score
    assert clean.gain > noisy.gain
    for result in (clean, noisy):
        assert not result.diverged
        assert result.steps == len(result.loss_curve) == 150
        assert result.num_examples == 1500
        assert all(math.isfinite(loss) for loss in result.loss_curve)
        assert set(result.per_family) == {"add", "count", "compare", "color", "home", "code"}
        # The overall score is the mean over families of equal size.
        assert result.score == pytest.approx(sum(result.per_family.values()) / len(result.per_family))
        assert result.tokens_processed > 150 * 16
        assert result.device == "cpu"
    # Learning the clean answers lowers the loss; mislabelled answers cannot be learnt as well.
    assert clean.loss_curve[-1] < clean.loss_curve[0]
    assert sum(clean.loss_curve[-20:]) < sum(noisy.loss_curve[-20:])


def test_run_result_round_trips_through_json(clean_and_noisy: tuple[RunResult, RunResult]) -> None:
    clean, _ = clean_and_noisy
    assert RunResult.model_validate_json(clean.model_dump_json()) == clean
    assert RunResult.model_validate_json(clean.model_dump_json(indent=2)).gain == pytest.approx(clean.gain)
    # Non-finite losses of a diverged run survive as NaN/inf instead of turning into null.
    broken = clean.model_copy(update={"loss_curve": [2.0, float("nan"), float("inf")], "diverged": True})
    assert '"NaN"' not in broken.model_dump_json() and "NaN" in broken.model_dump_json()
    loaded = RunResult.model_validate_json(broken.model_dump_json())
    assert loaded.loss_curve[0] == 2.0 and math.isnan(loaded.loss_curve[1]) and loaded.loss_curve[2] == math.inf
    assert loaded.diverged


def test_a_non_finite_step_stops_a_diverging_run_and_it_is_still_scored(tmp_path: Path, monkeypatch) -> None:
    # Whether lr 10 without clipping reaches NaN/inf on its own depends on the CPU's kernels (on some it plateaus),
    # so the loss of the 5th training step is made NaN here.
    data = write_dataset(DataSpec(size=200, seed=22), tmp_path / "data.jsonl")
    hp = HyperParams(lr=10.0, max_grad_norm=None, max_steps=20, batch_size=16, max_seq_len=64)
    inject_at(monkeypatch, "nan_loss", 5)
    seen = []
    result = _run(data, hp, on_step=seen.append)
    # Training stops at the first step whose loss or gradient norm is not finite, and the run is still scored.
    assert result.diverged
    assert result.steps == 5 < hp.max_steps
    assert result.steps == len(result.loss_curve) == len(seen)
    assert all(record.finite for record in seen[:-1])
    assert not seen[-1].finite
    assert result.score < result.base_score - 20
    assert RunResult.model_validate_json(result.model_dump_json()).diverged
