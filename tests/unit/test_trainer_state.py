"""The trainer state is the whole run state: a run resumed from it continues exactly as the uninterrupted run,
dropout included, on the CPU and on a GPU (whose dropout draws from the device's own generator)."""

from __future__ import annotations

import pytest
import torch

from tuneahead_ray.modeling import load_model
from tuneahead_ray.schemas import HyperParams
from tuneahead_ray.training import StepTrainer, attach_adapter, detach_adapter
from tuneahead_ray.training._encode import encode_pairs

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")),
]


def _trainer(model, tokenizer, hp: HyperParams) -> StepTrainer:
    prompts = [f"What is {a} plus {b}?" for a in range(8) for b in range(4)]
    responses = [str(a + b) for a in range(8) for b in range(4)]
    pairs = encode_pairs(tokenizer, prompts, responses, hp.max_seq_len)
    return StepTrainer(attach_adapter(model, hp), pairs, hp, total_steps=12, pad_id=tokenizer.pad_token_id)


@pytest.mark.parametrize("device", DEVICES)
def test_a_run_resumed_from_its_saved_state_is_the_uninterrupted_run(device, tokenizer, tmp_path) -> None:
    model = load_model("default", device)
    hp = HyperParams(lr=5e-3, lora_r=4, lora_alpha=8, lora_dropout=0.3, batch_size=4, max_steps=12, seed=3)
    straight = _trainer(model, tokenizer, hp)
    for _ in range(4):
        straight.step()
    state = straight.save_state(tmp_path / "state")
    rest = [straight.step().loss for _ in range(8)]
    model = detach_adapter(straight.model)

    torch.manual_seed(1234)  # other work in the process moves every generator between the probe and the GO run
    if device == "cuda":
        torch.cuda.manual_seed(1234)
        assert "cuda_rng" in _saved_tensors(state)
    resumed = _trainer(model, tokenizer, hp)
    resumed.restore_state(state)
    assert [resumed.step().loss for _ in range(8)] == rest  # equal, not close
    detach_adapter(resumed.model)

    # Had the random state not been restored, dropout would draw other masks: the check above tells runs apart.
    unseeded = _trainer(model, tokenizer, hp)
    unseeded.restore_state(state)
    torch.manual_seed(99)
    if device == "cuda":
        torch.cuda.manual_seed(99)
    assert [unseeded.step().loss for _ in range(8)] != rest


def _saved_tensors(state) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(state / "trainer_state.safetensors"))


def test_a_state_resumed_on_another_kind_of_device_says_the_run_is_not_the_same(tokenizer, tmp_path, caplog) -> None:
    import json

    model = load_model("default", "cpu")
    hp = HyperParams(lr=5e-3, lora_r=4, lora_alpha=8, lora_dropout=0.3, batch_size=4, max_steps=12, seed=3)
    trainer = _trainer(model, tokenizer, hp)
    trainer.step()
    state = trainer.save_state(tmp_path / "state")
    model = detach_adapter(trainer.model)
    meta = json.loads((state / "trainer_state.json").read_text())
    assert meta["device_type"] == "cpu" and "cuda_rng" not in _saved_tensors(state)
    (state / "trainer_state.json").write_text(json.dumps({**meta, "device_type": "cuda"}))  # as if probed on a GPU
    resumed = _trainer(model, tokenizer, hp)
    with caplog.at_level("WARNING"):
        resumed.restore_state(state)
    assert "saved on cuda, resumed on cpu" in caplog.text
    assert resumed.steps_done == 1
    detach_adapter(resumed.model)
