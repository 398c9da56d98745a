"""Loading a base model and its tokenizer the way a real checkpoint is loaded: ``from_pretrained`` on a directory."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch and transformers load in seconds: only the functions that need them import them
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "DEFAULT_MODEL",
    "ModelDirError",
    "attention_for",
    "default_model_dir",
    "default_proxy_dir",
    "resolve_device",
    "resolve_model_dir",
    "shard_plan",
    "load_model",
    "load_tokenizer",
]

#: Name that selects the tiny Qwen2 shipped inside the package.
DEFAULT_MODEL = "default"


class ModelDirError(ValueError):
    """A model directory that cannot be loaded; the message names the directory and what is missing."""


def default_model_dir() -> Path:
    """The embedded tiny Qwen2 (built by ``tuneahead-ray testbed build-base``)."""
    return Path(__file__).resolve().parent / "testbed" / "assets" / "tiny-qwen2"


def default_proxy_dir(size: str = "proxy") -> Path:
    """A proxy model of the ProxyLM-style baseline: ``proxy`` (7% of the embedded model, other pretraining) or
    ``strong-proxy`` (19%, the embedded model's pretraining); ``build-base --size SIZE`` rebuilds it."""
    return default_model_dir().with_name(f"tiny-qwen2-{size}")


def resolve_model_dir(model: str | Path) -> Path:
    """Map 'default' to the embedded model and check that a directory holds a loadable checkpoint."""
    path = default_model_dir() if str(model) == DEFAULT_MODEL else Path(model).expanduser().resolve()
    if not path.is_dir():
        raise ModelDirError(f"model directory {path} does not exist")
    config = path / "config.json"
    if not config.is_file():
        raise ModelDirError(f"model directory {path} has no config.json (expected a Hugging Face layout)")
    try:
        json.loads(config.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelDirError(f"{config} is not valid JSON: {err}") from None
    if not any(path.glob("*.safetensors")):
        raise ModelDirError(f"model directory {path} has no *.safetensors weights (pickled .bin is not loaded)")
    if not (path / "tokenizer.json").is_file() and not (path / "tokenizer_config.json").is_file():
        raise ModelDirError(f"model directory {path} has no tokenizer (tokenizer.json / tokenizer_config.json)")
    return path


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' picks CUDA when present, else CPU; 'cuda' without a GPU is an error, not a silent fallback."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device != "cpu" and not re.fullmatch(r"cuda(:\d+)?", device):
        raise ValueError(f"device must be auto, cpu or cuda[:N], got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but no CUDA GPU is visible")
    return torch.device(device)


def _dtype_for(device: torch.device) -> torch.dtype:
    """bf16 on GPUs that support it (as real fine-tuning runs), fp32 on CPU."""
    import torch

    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def load_tokenizer(model: str | Path) -> PreTrainedTokenizerBase:
    """The model directory's tokenizer, loaded offline, with a pad token guaranteed."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_dir(model), trust_remote_code=False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.chat_template is None:
        raise ModelDirError(f"tokenizer of {model} has no chat template; fine-tuning data needs one")
    return tokenizer


def attention_for(device: torch.device) -> str:
    """FlashAttention 2 on CUDA where the ``flash_attn`` package is installed, else PyTorch's SDPA kernels (which
    pick their own flash or memory-efficient kernel): neither keeps the attention matrix for the backward pass."""
    import importlib.util

    if device.type == "cuda" and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


#: Share of each GPU's free memory a sharded model's weights may take; the rest is for activations.
SHARD_WEIGHT_SHARE = 0.6


def shard_plan(model: str | Path, gpus: int, free_bytes: list[int] | None = None) -> dict[str, int]:
    """Which of ``gpus`` CUDA devices holds each block of the model: whole decoder layers, balanced so that every
    GPU keeps room for its share of the activations (accelerate's planner, on a weightless copy of the model).

    ``free_bytes`` (per GPU; default: what CUDA reports) lets the plan be made without the GPUs.
    """
    import torch
    from accelerate import infer_auto_device_map, init_empty_weights
    from accelerate.utils import get_balanced_memory
    from transformers import AutoConfig, AutoModelForCausalLM

    if gpus < 2:
        raise ValueError(f"shard_plan: needs at least 2 GPUs, got {gpus}")
    if free_bytes is None:
        free_bytes = [torch.cuda.mem_get_info(i)[0] for i in range(gpus)]
    config = AutoConfig.from_pretrained(resolve_model_dir(model), trust_remote_code=False)
    with init_empty_weights():
        empty = AutoModelForCausalLM.from_config(config, trust_remote_code=False)
    budget = {i: int(free * SHARD_WEIGHT_SHARE) for i, free in enumerate(free_bytes[:gpus])}
    dtype = torch.bfloat16
    unsplit = list(getattr(empty, "_no_split_modules", None) or [])
    balanced = get_balanced_memory(empty, max_memory=budget, no_split_module_classes=unsplit, dtype=dtype)
    plan = infer_auto_device_map(empty, max_memory=balanced, no_split_module_classes=unsplit, dtype=dtype)
    if any(not isinstance(where, int) for where in plan.values()):
        raise ModelDirError(f"{model}: does not fit {gpus} GPUs at {SHARD_WEIGHT_SHARE:.0%} of their free memory")
    return plan


def load_model(model: str | Path, device: str | torch.device = "auto", gpus: int = 1) -> PreTrainedModel:
    """The causal LM in the directory, on ``device``, in bf16 on CUDA and fp32 on CPU, never with remote code,
    with fused attention kernels (:func:`attention_for`; a model that has none keeps its own). With ``gpus`` > 1 the
    model is sharded over that many CUDA devices by whole decoder layers (:func:`shard_plan`): a probe worker of a
    model larger than one GPU holds several.

    transformers' per-load progress bar stays off: our commands load models between their own progress bars.
    """
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    target = resolve_device(device) if isinstance(device, str) else device
    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        options = {"dtype": _dtype_for(target), "trust_remote_code": False, "use_safetensors": True}
        if gpus > 1:
            if target.type != "cuda":
                raise ValueError(f"a model sharded over {gpus} GPUs needs device cuda, got {target}")
            options["device_map"] = shard_plan(model, gpus)
        try:
            loaded = AutoModelForCausalLM.from_pretrained(
                resolve_model_dir(model), attn_implementation=attention_for(target), **options
            )
        except (ValueError, ImportError):  # an architecture without SDPA/FlashAttention support
            loaded = AutoModelForCausalLM.from_pretrained(resolve_model_dir(model), **options)
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()
    return loaded if gpus > 1 else loaded.to(target)
