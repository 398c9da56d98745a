"""The trainer state is the whole run state: a run resumed from it continues exactly as the uninterrupted run,
dropout included, on the CPU and on a GPU (whose dropout draws from the device's own generator)."""

from __future__ import annotations

import pytest
import torch

from tuneahead_ray.base_models import load_model
from tuneahead_ray.schemas import HyperParams
from tuneahead_ray.training import StepTrainer, attach_adapter, detach_adapter
from tuneahead_ray.training._encode import encode_pairs

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.gpu),  # skipped without CUDA (tests/conftest.py)
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


def test_length_grouping_keeps_every_row_once_per_epoch_and_cuts_padding(tokenizer) -> None:
    import numpy as np

    from tuneahead_ray.training import length_grouped

    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 500, size=1000).tolist()
    order = rng.permutation(1000)
    grouped = length_grouped(order, lengths, batch_size=8)
    assert sorted(grouped.tolist()) == list(range(1000))  # a reordering of the epoch, nothing dropped or repeated
    assert lengths[grouped[0]] == max(lengths)  # the largest batch comes first: it fails at step 1, not midway

    def padded(o) -> int:
        return sum(8 * max(lengths[i] for i in o[s : s + 8]) for s in range(0, len(o), 8))

    assert padded(grouped) < 0.7 * padded(order)

    model = load_model("default", "cpu")
    hp = HyperParams(lr=5e-3, lora_r=4, batch_size=4, max_steps=8, seed=3, group_by_length=True)
    trainer = _trainer(model, tokenizer, hp)
    seen = [i for _ in range(8) for i in trainer._next_indices()]  # 32 rows: exactly one epoch
    assert sorted(seen) == list(range(32))
    detach_adapter(trainer.model)


def test_a_candidate_decides_length_grouping_for_its_model_and_keeps_its_old_id(tmp_path) -> None:
    from tuneahead_ray.schemas import Candidate, DatasetRef, content_hash

    data = tmp_path / "d.jsonl"
    data.write_text('{"instruction": "a", "output": "b"}\n')
    embedded = Candidate(model="default", dataset=DatasetRef(path=data), hp=HyperParams(lr=1e-3))
    real = Candidate(model=str(tmp_path / "qwen"), dataset=DatasetRef(path=data), hp=HyperParams(lr=1e-3))
    assert embedded.hp.group_by_length is False and real.hp.group_by_length is True
    before = {"model": "default", "dataset": str(data), "format": "auto", "hp": HyperParams(lr=1e-3).model_dump()}
    del before["hp"]["group_by_length"]  # the payload of ids made before the field existed
    assert embedded.candidate_id() == content_hash(before)
    explicit = Candidate(model="default", dataset=DatasetRef(path=data), hp=HyperParams(lr=1e-3, group_by_length=True))
    assert explicit.candidate_id() != embedded.candidate_id()


def test_gradient_checkpointing_changes_no_value_and_is_off_again_after_the_run(tokenizer) -> None:
    hp = HyperParams(lr=5e-3, lora_r=4, lora_alpha=8, lora_dropout=0.3, batch_size=4, max_steps=12, seed=3)
    model = load_model("default", "cpu")
    runs = {}
    for mode in ("off", "on"):
        prompts = [f"What is {a} plus {b}?" for a in range(8) for b in range(4)]
        pairs = encode_pairs(tokenizer, prompts, [str(a + b) for a in range(8) for b in range(4)], hp.max_seq_len)
        trainer = StepTrainer(attach_adapter(model, hp), pairs, hp, 12, tokenizer.pad_token_id, checkpointing=mode)
        assert trainer.memory.checkpointing == (mode == "on")
        flagged = any(getattr(m, "gradient_checkpointing", False) for m in trainer.model.modules())
        assert flagged == (mode == "on")
        runs[mode] = [trainer.step().loss for _ in range(6)]
        model = detach_adapter(trainer.model)
        assert not any(getattr(m, "gradient_checkpointing", False) for m in model.modules())
    assert runs["on"] == runs["off"]  # recomputation replays the same values and dropout masks


def _seven_b_shaped() -> torch.nn.Module:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=152_064,
        hidden_size=3584,
        intermediate_size=18_944,
        num_hidden_layers=28,
        num_attention_heads=28,
        num_key_value_heads=4,
        torch_dtype="bfloat16",
    )
    with torch.device("meta"):  # shapes only: no memory
        return Qwen2ForCausalLM(config).to(torch.bfloat16)


@pytest.mark.parametrize(
    ("batch", "free_gib", "expected"),
    [
        (8, 124, None),  # H200 after the 7B weights: fits as it is
        (16, 124, "some"),  # twice the batch: a share of the layers checkpointed
        (8, 63, "some"),  # an 80 GB GPU after the weights
        (16, 63, 1),  # every layer checkpointed
        (16, 8, "error"),  # cannot fit even so: said before the first step
    ],
)
def test_memory_plan_of_a_7b_shaped_model(batch, free_gib, expected, monkeypatch) -> None:
    import numpy as np

    from tuneahead_ray.training import BatchTooLargeError, plan_memory
    from tuneahead_ray.training import _memory as memory_module
    from tuneahead_ray.training._encode import EncodedPairs

    model = _seven_b_shaped()
    monkeypatch.setattr(memory_module, "_free_bytes", lambda m: free_gib * memory_module.GIB)
    pairs = EncodedPairs([np.zeros(n, dtype=np.int64) for n in (300, 1024, 700)], np.zeros(3), np.ones(3), 0)
    hp = HyperParams(batch_size=batch, max_seq_len=1024)
    if expected == "error":
        with pytest.raises(BatchTooLargeError, match=r"batch 16 x 1024 tokens needs ~\d+\.\d GiB .* 8\.0 GiB free"):
            plan_memory(model, pairs, hp)
        return
    plan = plan_memory(model, pairs, hp)
    if expected == "some":
        assert 1 < plan.checkpoint_every < 28
    else:
        assert plan.checkpoint_every == expected
    assert plan.batch_tokens == batch * 1024
    assert plan.checkpointed_bytes < plan.activation_bytes / 5
    assert plan_memory(model, pairs, hp, "off").checkpointing is False  # forced
