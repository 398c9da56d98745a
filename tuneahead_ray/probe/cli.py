"""``run``: one full LoRA fine-tuning run of a dataset, scored on a benchmark and printed as JSON."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from tuneahead_ray.base_models import DEFAULT_MODEL, resolve_model_dir
from tuneahead_ray.data import load_dataset
from tuneahead_ray.evaluation import build_benchmark, default_benchmark_spec, load_benchmark_file
from tuneahead_ray.probe._worker import full_run
from tuneahead_ray.schemas import Candidate, DatasetRef, HyperParams
from tuneahead_ray.yaml_config import load_yaml_model

__all__ = ["add_commands"]


def _progress(total: int, desc: str) -> Callable:
    """A step callback drawing a progress bar, created at the first step (so errors before it print cleanly)."""
    from tqdm.auto import tqdm

    bars: list = []

    def on_step(record) -> None:
        if not bars:
            bars.append(tqdm(total=total, desc=desc, unit="step", file=sys.stderr, dynamic_ncols=True))
        bar = bars[0]
        bar.update(1)
        bar.set_postfix(loss=f"{record.loss:.3f}", refresh=False)
        if bar.n >= total:
            bar.close()

    return on_step


def _fine_tune(data: Path, hp: HyperParams, model: str, device: str, data_format: str, benchmark=None):
    candidate = Candidate(model=model, dataset=DatasetRef(path=data, format=data_format), hp=hp)
    steps = hp.total_steps(load_dataset(candidate.dataset).num_rows)
    return full_run(candidate, benchmark, device=device, on_step=_progress(steps, "fine-tune"))


def _cmd_run(args: argparse.Namespace) -> int:
    hp = load_yaml_model(args.hp, HyperParams) if args.hp else HyperParams()
    resolve_model_dir(args.model)  # a broken model directory is the first thing to say
    benchmark = load_benchmark_file(args.benchmark) if args.benchmark else default_benchmark_spec(args.model)
    build_benchmark(benchmark)  # a bad benchmark file fails here, before any training
    result = _fine_tune(args.data, hp, args.model, args.device, args.format, benchmark)
    text = result.model_dump_json(indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``run`` on the main command's sub-parsers."""
    run = sub.add_parser("run", help="one full LoRA fine-tuning run + benchmark score, printed as JSON")
    run.add_argument("--data", type=Path, required=True, help="training data: .json, .jsonl or .parquet")
    run.add_argument("--format", default="auto", choices=["auto", "chat", "instruction"])
    run.add_argument("--hp", type=Path, help="hyperparameters YAML (defaults otherwise)")
    run.add_argument("--model", default=DEFAULT_MODEL, help="base model directory (HF layout) or 'default'")
    run.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    run.add_argument(
        "--benchmark",
        type=Path,
        help="benchmark YAML: the fields of a grid's `benchmark:` block, paths relative to the file "
        "(default: the testbed benchmark, for the embedded model only)",
    )
    run.add_argument("--out", type=Path, help="also write the JSON result here")
    run.set_defaults(func=_cmd_run)
