"""Build the embedded tiny Qwen2: a byte-level tokenizer, a ~300k-parameter ``Qwen2ForCausalLM``, brief pretraining.

The result is saved in the standard Hugging Face layout and loaded back with ``from_pretrained``, exactly like a
real Qwen2.5 checkpoint. Pretraining sees level 1 of every family often and level 5 almost never, so the base
model is partly competent everywhere: it knows the popular entities and small sums, and fine-tuning has room to
help (or to hurt).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from tuneahead_ray.schemas import HyperParams
from tuneahead_ray.testbed._families import BENCHMARK_FAMILIES, OFF_TARGET_FAMILIES
from tuneahead_ray.training import StepTrainer, encode_pairs

__all__ = [
    "CHAT_TEMPLATE",
    "MODEL_SIZES",
    "PRETRAIN_MIXES",
    "PRETRAIN_LEVEL_WEIGHTS",
    "PretrainMix",
    "build_base",
    "build_tokenizer",
    "tiny_qwen2_config",
]

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_end|>", "<|user|>", "<|assistant|>", "<|system|>")
#: A compact Qwen-style template: one special token per role, ``<|im_end|>`` closes the answer.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}<|system|>{{ message['content'] }}"
    "{% elif message['role'] == 'user' %}<|user|>{{ message['content'] }}"
    "{% elif message['role'] == 'assistant' %}<|assistant|>{{ message['content'] }}<|im_end|>"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
#: How often pretraining sees each difficulty level 1..5 (popular entities and small operands dominate).
PRETRAIN_LEVEL_WEIGHTS = (10.0, 2.0, 0.3, 0.05, 0.01)
#: Share of pretraining drawn from the off-target families (the base model has seen the wider world).
PRETRAIN_OFF_TARGET = 0.2
PRETRAIN_EXAMPLES = 60_000


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer with no merges: one token per byte, so digits and letters are single tokens."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    backend = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(alphabet)}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>", model_max_length=512
    )
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS[2:])})
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


#: Shapes of the embedded model (330k parameters) and of the proxies the ProxyLM-style baseline fine-tunes:
#: ``proxy`` (24k, 7.4% of the embedded model: inside ProxyLM's 2-8% of the target) and ``strong-proxy`` (64k, 19%,
#: pretrained exactly like the embedded model, so far more telling about it than a real proxy can be).
MODEL_SIZES = {
    "base": {"hidden_size": 96, "intermediate_size": 256, "num_hidden_layers": 3, "num_attention_heads": 4},
    "proxy": {"hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 2},
    "strong-proxy": {"hidden_size": 48, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2},
}


@dataclass(frozen=True)
class PretrainMix:
    """What a tiny model's pretraining sees: how often each difficulty level 1..5, the off-target share, the seed."""

    level_weights: tuple[float, ...]
    off_target: float
    seed: int


#: The embedded model's pretraining; ``proxy`` pretrains on another mix and seed, as a real proxy from another
#: model family has other pretraining data (flatter over levels, more off-target text); ``strong-proxy`` on the
#: embedded model's own.
PRETRAIN_MIXES = {
    "base": PretrainMix(level_weights=PRETRAIN_LEVEL_WEIGHTS, off_target=PRETRAIN_OFF_TARGET, seed=0),
    "proxy": PretrainMix(level_weights=(6.0, 3.0, 1.0, 0.3, 0.1), off_target=0.4, seed=17),
    "strong-proxy": PretrainMix(level_weights=PRETRAIN_LEVEL_WEIGHTS, off_target=PRETRAIN_OFF_TARGET, seed=0),
}


def tiny_qwen2_config(tokenizer: PreTrainedTokenizerFast, size: str = "base") -> Qwen2Config:
    return Qwen2Config(
        vocab_size=len(tokenizer),
        **MODEL_SIZES[size],
        num_key_value_heads=MODEL_SIZES[size]["num_attention_heads"] // 2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )


def _pretraining_pairs(rng: random.Random, size: int, mix: PretrainMix) -> tuple[list[str], list[str]]:
    levels = range(1, len(mix.level_weights) + 1)
    prompts, answers = [], []
    for _ in range(size):
        families = OFF_TARGET_FAMILIES if rng.random() < mix.off_target else BENCHMARK_FAMILIES
        prompt, answer = rng.choice(families).sample(rng, rng.choices(levels, mix.level_weights)[0])
        prompts.append(prompt)
        answers.append(answer)
    return prompts, answers


def build_base(
    out_dir: str | Path, steps: int = 1000, seed: int | None = None, size: str = "base", log_every: int = 250
) -> Path:
    """Pretrain the tiny Qwen2 of ``size`` from scratch on the CPU on its :data:`PRETRAIN_MIXES` entry (``seed``
    overrides the mix's) and save model + tokenizer to ``out_dir``.

    Deterministic for a given seed, torch version and thread count.
    """
    if size not in MODEL_SIZES:
        raise ValueError(f"unknown model size {size!r}; known: {sorted(MODEL_SIZES)}")
    mix = PRETRAIN_MIXES[size]
    seed = mix.seed if seed is None else seed
    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    model = Qwen2ForCausalLM(tiny_qwen2_config(tokenizer, size))
    prompts, answers = _pretraining_pairs(random.Random(seed), PRETRAIN_EXAMPLES, mix)
    pairs = encode_pairs(tokenizer, prompts, answers, max_seq_len=64)
    hp = HyperParams(lr=3e-3, batch_size=32, max_steps=steps, warmup_ratio=0.05, lr_schedule="cosine", seed=seed)
    trainer = StepTrainer(model, pairs, hp, total_steps=steps, pad_id=tokenizer.pad_token_id)
    started = time.perf_counter()
    for _ in range(steps):
        record = trainer.step()
        if record.step % log_every == 0 or record.step == steps:
            elapsed = time.perf_counter() - started
            print(f"pretrain step {record.step}/{steps}  loss {record.loss:.3f}  {elapsed:.0f}s", flush=True)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out
