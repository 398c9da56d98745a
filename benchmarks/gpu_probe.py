"""The probe on a GPU at real model sizes: cost over pure training, throughput, memory and the exact hand-off.

Builds Qwen2.5-0.5B- and Qwen2.5-7B-shaped models with random weights (``Qwen2Config`` with the real shapes, saved
as model directories with the embedded tokenizer, loaded back with the package's own ``load_model``), then for each
shape times a K = 100 probe (``run_probe``: the candidate's first K steps with every measurement, as a probe worker
runs it once the dataset's base scores are known) against the same 100 pure training steps, and reports real
(non-pad) tokens/s, model TFLOP/s on real tokens (4 x parameters per token: the forward pass and the backward
pass to the inputs, no weight gradients but the adapters'), the share of padded tokens that are real, and peak
memory. A 16 x 1024 probe of the 7B shape runs as an 80 GB GPU would plan it (its memory plan sees 80 GiB) and
reports its peak. Finally a run with ``lora_dropout`` 0.1 is resumed from its saved 20-step state and compared,
loss for loss, with the uninterrupted run.

Nothing is downloaded, and Ray, LightGBM and SHAP are not needed (the GPU machine it is checked on has none):

    python benchmarks/gpu_probe.py                # one GPU, under 5 minutes on an H200
    python benchmarks/gpu_probe.py --dry-run      # tiny shapes on the CPU (a test runs this)

Prints a table and writes ``benchmarks/results/gpu_probe.json`` after every row, so a run cut short keeps what it
measured.
"""

from __future__ import annotations

import argparse
import math
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests._harness, benchmarks

import torch
import transformers
from transformers import Qwen2Config, Qwen2ForCausalLM

from tests._harness.results import markdown_table, results_path, write_results
from tuneahead_ray.base_models import default_model_dir, load_model, load_tokenizer
from tuneahead_ray.probe import BaseScores, ProbeSpec, encode_reference, run_probe
from tuneahead_ray.schemas import HyperParams
from tuneahead_ray.training import StepTrainer, attach_adapter, detach_adapter, encode_pairs
from tuneahead_ray.training import _memory as memory

GIB = 1 << 30
#: bf16 dense peak of one H200 (SXM), TFLOP/s.
H200_BF16_PEAK = 989.0

SHAPES = {
    "qwen2.5-0.5b": dict(
        vocab_size=151_936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
        num_key_value_heads=2, tie_word_embeddings=True,
    ),
    "qwen2.5-7b": dict(
        vocab_size=152_064, hidden_size=3584, intermediate_size=18_944, num_hidden_layers=28, num_attention_heads=28,
        num_key_value_heads=4, tie_word_embeddings=False,
    ),
}  # fmt: skip
DRY_SHAPES = {
    "qwen2.5-0.5b": dict(
        vocab_size=20_000, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, tie_word_embeddings=True,
    ),
    "qwen2.5-7b": dict(
        vocab_size=20_000, hidden_size=96, intermediate_size=192, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, tie_word_embeddings=False,
    ),
}  # fmt: skip


def _plan(dry: bool) -> list[dict]:
    """The rows to measure: (shape, batch, sequence length, probe steps, memory the plan may assume)."""
    if dry:
        return [
            {"shape": "qwen2.5-0.5b", "batch": 4, "seq": 64, "steps": 6, "timed": True},
            {"shape": "qwen2.5-7b", "batch": 4, "seq": 128, "steps": 6, "timed": True},
            {"shape": "qwen2.5-7b", "batch": 8, "seq": 128, "steps": 4, "timed": False, "as_gib": 80},
        ]
    return [
        {"shape": "qwen2.5-0.5b", "batch": 16, "seq": 512, "steps": 100, "timed": True},
        {"shape": "qwen2.5-7b", "batch": 8, "seq": 1024, "steps": 100, "timed": True},
        {"shape": "qwen2.5-7b", "batch": 16, "seq": 1024, "steps": 10, "timed": False, "as_gib": 80},
    ]


def _build_model(shape: dict, out: Path, device: torch.device) -> Path:
    """A model directory of the shape with random weights and the embedded tokenizer (loaded like a real one)."""
    config = Qwen2Config(max_position_embeddings=32_768, **shape)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    with torch.device(device):
        model = Qwen2ForCausalLM(config).to(dtype)
    model.save_pretrained(out, safe_serialization=True)
    del model
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(default_model_dir() / name, out / name)
    return out


def _dataset(tokenizer, rows: int, max_len: int, seed: int):
    """Instruction pairs whose lengths spread as real ones do (log-normal; long prompts, shorter answers)."""
    rng = random.Random(seed)
    words = [
        "the",
        "of",
        "model",
        "data",
        "train",
        "score",
        "answer",
        "question",
        "token",
        "layer",
        "value",
        "step",
        "batch",
        "run",
    ]

    def text(mean: float) -> str:
        length = max(3, min(int(rng.lognormvariate(math.log(mean), 0.7)), max_len))
        return " ".join(rng.choice(words) for _ in range(length // 5 + 1))[:length]

    prompts = [text(max_len * 0.3) for _ in range(rows)]
    answers = [text(max_len * 0.12) for _ in range(rows)]
    return encode_pairs(tokenizer, prompts, answers, max_len)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _hp(batch: int, seq: int, total: int, dropout: float = 0.0) -> HyperParams:
    return HyperParams(
        lr=2e-4, lora_r=16, lora_alpha=32, lora_dropout=dropout, batch_size=batch, max_steps=total,
        max_seq_len=seq, seed=7, group_by_length=True,
    )  # fmt: skip


def _trainer(model, pairs, hp, tokenizer, checkpointing="auto"):
    return StepTrainer(attach_adapter(model, hp), pairs, hp, hp.max_steps, tokenizer.pad_token_id, checkpointing)


def _pure_steps(model, pairs, hp, tokenizer, steps, device) -> tuple[float, int, int]:
    """Seconds, real tokens and padded tokens of ``steps`` plain optimizer steps."""
    trainer = _trainer(model, pairs, hp, tokenizer)
    _sync(device)
    started = time.perf_counter()
    real = padded = 0
    for _ in range(steps):
        real += trainer.step().tokens
    _sync(device)
    seconds = time.perf_counter() - started
    trainer_batches = [trainer._order[i : i + hp.batch_size] for i in range(0, steps * hp.batch_size, hp.batch_size)]
    padded = sum(len(b) * max(len(pairs.input_ids[i]) for i in b) for b in trainer_batches if len(b))
    detach_adapter(trainer.model)
    return seconds, real, padded


def _probe(model, pairs, hp, tokenizer, steps, spec, reference, base, device, checkpointing="auto"):
    """Seconds and the trainer's memory plan of a ``steps``-step probe with every measurement."""
    trainer = _trainer(model, pairs, hp, tokenizer, checkpointing)
    _sync(device)
    started = time.perf_counter()
    run_probe(trainer, steps, spec, reference, base, data_key="bench")
    _sync(device)
    seconds = time.perf_counter() - started
    plan = trainer.memory
    detach_adapter(trainer.model)
    return seconds, plan


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / GIB if device.type == "cuda" else None


def _measure_row(row: dict, model, tokenizer, device, spec, reference) -> dict:
    hp = _hp(row["batch"], row["seq"], total=2000)
    pairs = _dataset(tokenizer, rows=4000, max_len=row["seq"], seed=1)
    base = BaseScores()
    params = sum(p.numel() for p in model.parameters())
    _probe(model, pairs, hp, tokenizer, 3, spec, reference, base, device)  # warm-up; the dataset's base scores
    result = {**{k: row[k] for k in ("shape", "batch", "seq", "steps")}, "parameters": params}
    if row["timed"]:
        pure, real, padded = _pure_steps(model, pairs, hp, tokenizer, row["steps"], device)
        _reset_peak(device)
        probe, plan = _probe(model, pairs, hp, tokenizer, row["steps"], spec, reference, base, device)
        tflops = 4 * params * real / pure / 1e12
        result.update(
            probe_seconds=probe,
            pure_seconds=pure,
            overhead=probe / pure - 1,
            real_tokens_per_second=real / pure,
            tflops_real=tflops,
            share_of_h200_peak=tflops / H200_BF16_PEAK,
            real_share_of_padded=real / padded if padded else None,
        )
    else:  # memory only, planned as on a GPU with row["as_gib"] of memory
        weights = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
        as_free = row["as_gib"] * GIB - weights
        original, memory._free_bytes = memory._free_bytes, lambda m: as_free
        try:
            _reset_peak(device)
            _, plan = _probe(model, pairs, hp, tokenizer, row["steps"], spec, reference, base, device)
        finally:
            memory._free_bytes = original
        result["planned_for_gib"] = row["as_gib"]
    result.update(checkpoint_every=plan.checkpoint_every, peak_gib=_peak_gib(device))
    return result


def _resume_check(model, tokenizer, device, steps: int) -> dict:
    """A run with dropout resumed from its saved state after ``steps // 3`` steps vs the uninterrupted run."""
    hp = _hp(4, 256, total=steps, dropout=0.1)
    pairs = _dataset(tokenizer, rows=400, max_len=256, seed=2)
    cut = steps // 3
    straight = _trainer(model, pairs, hp, tokenizer)
    with tempfile.TemporaryDirectory() as state:
        for _ in range(cut):
            straight.step()
        straight.save_state(state)
        rest = [straight.step().loss for _ in range(steps - cut)]
        model = detach_adapter(straight.model)
        torch.manual_seed(12345)  # other work between the probe and the GO run moves the generators
        if device.type == "cuda":
            torch.cuda.manual_seed(12345)
        resumed = _trainer(model, pairs, hp, tokenizer)
        resumed.restore_state(state)
        continued = [resumed.step().loss for _ in range(steps - cut)]
        detach_adapter(resumed.model)
    differences = [abs(a - b) for a, b in zip(rest, continued, strict=True)]
    return {"steps": steps, "resumed_at": cut, "equal": continued == rest, "max_loss_difference": max(differences)}


def _fmt(value, pattern: str) -> str | None:
    return pattern.format(value) if value is not None else None


def _row(r: dict) -> dict:
    every = r.get("checkpoint_every")
    planned = f" (as on {r['planned_for_gib']} GiB)" if "planned_for_gib" in r else ""
    return {
        "shape": r["shape"],
        "batch": f"{r['batch']} x {r['seq']}",
        "K": r["steps"],
        "probe s": _fmt(r.get("probe_seconds"), "{:.1f}"),
        "pure s": _fmt(r.get("pure_seconds"), "{:.1f}"),
        "overhead": _fmt(r.get("overhead"), "{:.1%}"),
        "real tok/s": _fmt(r.get("real_tokens_per_second"), "{:,.0f}"),
        "TFLOP/s (real)": _fmt(r.get("tflops_real"), "{:.0f}"),
        "real/padded": _fmt(r.get("real_share_of_padded"), "{:.0%}"),
        "checkpointing": ("off" if every is None else f"every {every}") + planned,
        "peak GiB": _fmt(r.get("peak_gib"), "{:.1f}"),
    }


def _table(report: dict) -> str:
    text = markdown_table([_row(r) for r in report["rows"]])
    if "resume" in report:
        resume = report["resume"]
        text += (
            f"\n\nresume with lora_dropout 0.1 after {resume['resumed_at']} of {resume['steps']} steps: "
            f"{'equal' if resume['equal'] else 'DIFFERENT'} (max loss difference {resume['max_loss_difference']:.2e})"
        )
    return text


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU (checks the script)")
    parser.add_argument("--out", type=Path, default=results_path("gpu_probe"))
    parser.add_argument("--workdir", type=Path, help="where the model directories go (default: a temporary one)")
    args = parser.parse_args(argv)
    device = torch.device("cpu" if args.dry_run else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA GPU visible (use --dry-run to check the script on the CPU)")
    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(0)
    shapes = DRY_SHAPES if args.dry_run else SHAPES
    spec = ProbeSpec(min_steps=2, max_steps=100, interval=2 if args.dry_run else 20)
    report: dict = {"device": str(device), "dry_run": args.dry_run, "rows": []}

    def save() -> None:
        write_results("gpu_probe", report, args, args.out)

    work = Path(args.workdir or tempfile.mkdtemp(prefix="gpu-probe-"))
    tokenizer = load_tokenizer("default")
    reference = encode_reference(tokenizer, spec.reference_path, spec.reference_size)
    try:
        loaded: dict[str, torch.nn.Module] = {}
        for row in _plan(args.dry_run):
            if row["shape"] not in loaded:
                loaded.clear()
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                started = time.perf_counter()
                directory = _build_model(shapes[row["shape"]], work / row["shape"], device)
                loaded[row["shape"]] = load_model(directory, device)
                print(f"{row['shape']}: built and loaded in {time.perf_counter() - started:.0f} s", flush=True)
            try:
                result = _measure_row(row, loaded[row["shape"]], tokenizer, device, spec, reference)
            except torch.cuda.OutOfMemoryError as err:
                result = {**row, "error": f"out of memory: {str(err).splitlines()[0]}"}
            report["rows"].append(result)
            save()
            print(_table({"rows": [result]}).splitlines()[-1], flush=True)
            if row["shape"] == "qwen2.5-0.5b" and "resume" not in report:
                report["resume"] = _resume_check(loaded[row["shape"]], tokenizer, device, 12 if args.dry_run else 60)
                save()
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    print(_table(report))
    print(f"\n{_device_name(device)}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
