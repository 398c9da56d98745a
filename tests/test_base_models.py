"""Resolving, checking and loading model directories and devices."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from transformers import Qwen2ForCausalLM

from tuneahead_ray.base_models import (
    ModelDirError,
    default_model_dir,
    load_model,
    load_tokenizer,
    resolve_device,
    resolve_model_dir,
)


@pytest.fixture
def model_copy(tmp_path: Path) -> Path:
    """A writable copy of the embedded checkpoint, to be damaged by the test."""
    return Path(shutil.copytree(default_model_dir(), tmp_path / "my-model"))


def test_default_resolves_to_the_embedded_checkpoint() -> None:
    assert resolve_model_dir("default") == default_model_dir()
    assert (default_model_dir() / "config.json").is_file()


def test_a_complete_copy_resolves_to_its_absolute_path(model_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(model_copy.parent)
    assert resolve_model_dir("my-model") == model_copy.resolve()
    assert resolve_model_dir(Path("my-model")) == model_copy.resolve()


def _remove(path: Path) -> None:
    path.unlink()


@pytest.mark.parametrize(
    ("damage", "complaint"),
    [
        (lambda d: shutil.rmtree(d), "does not exist"),
        (lambda d: _remove(d / "config.json"), "no config.json"),
        (lambda d: (d / "config.json").write_text('{"model_type": "qwen2",', encoding="utf-8"), "not valid JSON"),
        (lambda d: (d / "config.json").write_bytes(b"\xff\xfe{}"), "not valid JSON"),
        (lambda d: _remove(d / "model.safetensors"), "safetensors"),
        (lambda d: (_remove(d / "tokenizer.json"), _remove(d / "tokenizer_config.json")), "no tokenizer"),
    ],
)
def test_unloadable_directories_are_named(model_copy: Path, damage, complaint: str) -> None:
    damage(model_copy)
    with pytest.raises(ModelDirError, match=complaint) as info:
        resolve_model_dir(model_copy)
    assert str(model_copy) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_pickled_weights_are_not_enough(model_copy: Path) -> None:
    (model_copy / "model.safetensors").rename(model_copy / "pytorch_model.bin")
    with pytest.raises(ModelDirError, match="safetensors"):
        resolve_model_dir(model_copy)


def test_a_file_is_not_a_model_directory(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"")
    with pytest.raises(ModelDirError, match=str(path)):
        resolve_model_dir(path)


def test_loading_a_damaged_directory_fails_before_transformers_does(model_copy: Path) -> None:
    (model_copy / "config.json").unlink()
    with pytest.raises(ModelDirError, match="config.json"):
        load_model(model_copy, "cpu")
    with pytest.raises(ModelDirError, match="config.json"):
        load_tokenizer(model_copy)


def test_tokenizer_without_chat_template_is_rejected(model_copy: Path) -> None:
    (model_copy / "chat_template.jinja").unlink()
    with pytest.raises(ModelDirError, match="chat template"):
        load_tokenizer(model_copy)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_without_a_gpu_is_an_error(device: str) -> None:
    with pytest.raises(ValueError, match="CUDA"):
        resolve_device(device)


@pytest.mark.parametrize("device", ["tpu", "mps", "CPU", "", "gpu"])
def test_unknown_device_strings_are_rejected(device: str) -> None:
    with pytest.raises(ValueError, match="device must be"):
        resolve_device(device)


def test_cpu_and_auto_devices() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_default_model_is_a_tiny_fp32_qwen2_on_cpu(base_model) -> None:
    assert isinstance(base_model, Qwen2ForCausalLM)
    params = list(base_model.parameters())
    assert all(p.dtype == torch.float32 and p.device.type == "cpu" for p in params)
    assert 0 < sum(p.numel() for p in params) < 1_000_000
    assert not base_model.training


def test_load_model_accepts_a_torch_device_and_a_path(model_copy: Path, base_model) -> None:
    model = load_model(model_copy, torch.device("cpu"))
    own = dict(model.named_parameters())
    assert own.keys() == dict(base_model.named_parameters()).keys()
    assert all(torch.equal(own[name], p) for name, p in base_model.named_parameters())


def test_default_tokenizer_has_chat_template_and_pad_token(tokenizer, base_model) -> None:
    assert tokenizer.chat_template
    assert tokenizer.pad_token is not None and tokenizer.pad_token_id is not None
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    assert tokenizer.eos_token_id == base_model.config.eos_token_id
    assert len(tokenizer) == base_model.config.vocab_size
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "add 1 2"}], tokenize=False, add_generation_prompt=True
    )
    assert "add 1 2" in text


def test_models_load_with_fused_attention_kernels(monkeypatch) -> None:
    import importlib.util

    import torch

    from tuneahead_ray.base_models import attention_for, load_model

    assert load_model("default", "cpu").config._attn_implementation == "sdpa"
    assert attention_for(torch.device("cpu")) == "sdpa"
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object() if name == "flash_attn" else None)
    assert attention_for(torch.device("cuda")) == "flash_attention_2"  # where flash-attn is installed
    monkeypatch.setattr(importlib.util, "find_spec", real_find_spec)
    if real_find_spec("flash_attn") is None:
        assert attention_for(torch.device("cuda")) == "sdpa"


def test_a_model_larger_than_one_gpu_is_sharded_by_whole_layers(tmp_path) -> None:
    from transformers import Qwen2Config

    from tuneahead_ray.base_models import ModelDirError, default_model_dir, load_model, shard_plan

    config = Qwen2Config(
        vocab_size=4096, hidden_size=256, intermediate_size=512, num_hidden_layers=6, num_attention_heads=4,
        num_key_value_heads=2, tie_word_embeddings=False,
    )  # fmt: skip
    Qwen2ForCausalLM(config).save_pretrained(tmp_path)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(default_model_dir() / name, tmp_path / name)
    weights = sum(p.numel() for p in Qwen2ForCausalLM(config).parameters()) * 2  # bf16 bytes
    plan = shard_plan(tmp_path, 2, free_bytes=[weights * 3 // 2] * 2)  # two "GPUs", neither holding it all at 60%
    assert set(plan.values()) == {0, 1}
    assert plan["model.embed_tokens"] == 0 and plan["lm_head"] == 1
    layers = [plan[f"model.layers.{i}"] for i in range(6)]
    assert layers == sorted(layers)  # consecutive layers per GPU: activations cross once
    with pytest.raises(ModelDirError, match="does not fit 2 GPUs"):
        shard_plan(tmp_path, 2, free_bytes=[weights // 8, weights // 8])
    with pytest.raises(ValueError, match="needs device cuda"):
        load_model(tmp_path, "cpu", gpus=2)


def test_pool_config_is_checked_when_built() -> None:
    from tuneahead_ray._private.workers import PoolConfig

    assert PoolConfig(gpus_per_worker=4).shards == 4 and PoolConfig(gpus_per_worker=0.5).shards == 1
    for bad, field in [
        ({"max_in_flight": 0}, "max_in_flight"),
        ({"gpus_per_worker": 1.5}, "gpus_per_worker"),
        ({"gpus_per_worker": 0}, "gpus_per_worker"),
        ({"num_workers": 0}, "num_workers"),
        ({"max_retries": -1}, "max_retries"),
        ({"job_timeout_s": 0}, "job_timeout_s"),
    ]:
        with pytest.raises(ValueError, match=field):
            PoolConfig(**bad)
