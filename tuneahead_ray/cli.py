"""The ``tuneahead-ray`` command."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from tuneahead_ray._cli_common import add_ray_args, compute_grid_features, init_ray, pool_config, run_bar
from tuneahead_ray.modeling import DEFAULT_MODEL, default_model_dir, default_proxy_dir
from tuneahead_ray.schemas import Candidate, DatasetRef, HyperParams
from tuneahead_ray.yaml_config import load_yaml_model

__all__ = ["main"]

#: A sound fine-tune of the embedded model (the testbed spread benchmark's reference run).
DEMO_HP = Path(__file__).resolve().parent / "testbed" / "hp_tiny.yaml"


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
    from tuneahead_ray.data import load_dataset
    from tuneahead_ray.probe import full_run

    candidate = Candidate(model=model, dataset=DatasetRef(path=data, format=data_format), hp=hp)
    steps = hp.total_steps(load_dataset(candidate.dataset).num_rows)
    return full_run(candidate, benchmark, device=device, on_step=_progress(steps, "fine-tune"))


def _cmd_run(args: argparse.Namespace) -> int:
    from tuneahead_ray.evaluation import build_benchmark, default_benchmark_spec, load_benchmark_file
    from tuneahead_ray.modeling import resolve_model_dir

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


def _parse_weights(text: str) -> dict[str, float]:
    """``add=1,count=2`` -> {"add": 1.0, "count": 2.0}, with errors that name --families."""
    weights = {}
    for item in text.split(","):
        name, sep, weight = item.partition("=")
        try:
            weights[name.strip()] = float(weight)
        except ValueError:
            raise ValueError(f"--families: expected NAME=WEIGHT, got {item!r}") from None
        if not sep:
            raise ValueError(f"--families: expected NAME=WEIGHT, got {item!r}")
    return weights


def _cmd_make_data(args: argparse.Namespace) -> int:
    from tuneahead_ray.testbed import DataSpec, write_dataset

    families = _parse_weights(args.families) if args.families else None
    fields = {
        "size": args.size,
        "min_level": args.min_level,
        "max_level": args.max_level,
        "label_noise": args.label_noise,
        "duplication": args.duplication,
        "format_corruption": args.format_corruption,
        "off_target": args.off_target,
        "seed": args.seed,
    }
    if families is not None:
        fields["families"] = families
    path = write_dataset(DataSpec(**fields), args.out)
    print(f"wrote {args.size} records to {path}")
    return 0


def _cmd_build_base(args: argparse.Namespace) -> int:
    from tuneahead_ray.testbed._base_model import build_base

    out = args.out or (default_model_dir() if args.size == "base" else default_proxy_dir())
    out = build_base(out, steps=args.steps, seed=args.seed, size=args.size)
    print(f"saved the tiny Qwen2 to {out}")
    return 0


def _cmd_features(args: argparse.Namespace) -> int:
    from tuneahead_ray.grid import grid_output_dir, load_grid

    grid, candidates = load_grid(args.grid)
    out = args.out or grid_output_dir(grid, args.grid) / "features.parquet"
    print(f"{len(candidates)} candidates from {args.grid}", file=sys.stderr)
    table, failures = compute_grid_features(args, grid, candidates, out)
    print(f"wrote {table.num_rows} rows to {out}")
    return 1 if failures else 0


def _print_history(history, out: Path) -> None:
    """The active build's error estimate per refit, and whether more runs still pay."""
    print(f"{'runs':>6}  estimated RMSE ({history.strategy.value} selection)")
    for batch in history.batches:
        print(f"{batch.runs:>6}  {batch.estimated_rmse:.3f}")
    if history.plateau_runs is not None:
        print(
            f"at {history.plateau_runs} runs the estimated error was < 5% below that of half as many: "
            "more runs add little"
        )
    else:
        print("every doubling of the corpus so far lowered the estimated error by >= 5%: more runs should help")
    print(f"history in {out / 'active.json'}")


def _cmd_corpus_build_grid(args: argparse.Namespace) -> int:
    from tuneahead_ray._cli_common import StageBars, pool_config
    from tuneahead_ray.corpus import build_active_corpus, build_grid_corpus
    from tuneahead_ray.evaluation import default_benchmark_spec
    from tuneahead_ray.grid import load_grid

    grid, candidates = load_grid(args.grid)
    if grid.benchmark is None:
        default_benchmark_spec(grid.model)  # a model directory needs a benchmark: say so before anything runs
    if args.strategy == "decision" and grid.threshold is None:
        raise ValueError(f"{args.grid}: threshold: --strategy decision needs the grid's success threshold")
    init_ray(args)
    bar, progress = run_bar("corpus runs")
    options = {
        "seed": args.seed,
        "gpu_hours": args.gpu_hours,
        "pool_config": pool_config(args, grid.device if args.device is None else args.device),
        "on_progress": StageBars(),
        "on_run": progress,
    }
    history = None
    if args.strategy is None:
        report = build_grid_corpus(grid, candidates, args.out, args.runs, **options)
    else:
        report, history = build_active_corpus(
            grid, candidates, args.out, args.runs, strategy=args.strategy, batch_size=args.batch, **options
        )
    bar.close()
    if history is not None:
        _print_history(history, Path(args.out))
    stopped = " (stopped at the --gpu-hours budget; rerun with a larger one to continue)" if report.at_budget else ""
    print(
        f"corpus at {Path(args.out) / 'corpus.parquet'}: {report.table.num_rows} runs of {grid.model}, "
        f"{report.spent_hours:.2f} device-hours{stopped}"
    )
    for failure in report.failures:
        print(f"failed: {failure.key}: {failure.error}", file=sys.stderr)
    return 1 if report.failures else 0


def _cmd_corpus_build(args: argparse.Namespace) -> int:
    from tuneahead_ray.corpus import build_corpus
    from tuneahead_ray.modeling import resolve_model_dir
    from tuneahead_ray.workers import PoolConfig

    if args.runs < 1:
        raise ValueError(f"--runs: must be at least 1, got {args.runs}")
    if args.gpu_hours is not None and not args.gpu_hours > 0:
        raise ValueError(f"--gpu-hours: must be positive, got {args.gpu_hours}")
    if args.batch < 1:
        raise ValueError(f"--batch: must be at least 1, got {args.batch}")
    if args.grid is not None:
        return _cmd_corpus_build_grid(args)
    if args.gpu_hours is not None:
        raise ValueError("--gpu-hours: a budget applies to a grid's corpus (--grid)")
    if args.strategy is not None:
        raise ValueError("--strategy: active selection applies to a grid's corpus (--grid)")

    proxy = None if args.no_proxy else str(resolve_model_dir(args.proxy_model or default_proxy_dir()))
    init_ray(args)
    bar, progress = run_bar("corpus runs")

    table, failures = build_corpus(
        args.runs,
        args.out,
        seed=args.seed,
        proxy_model=proxy,
        pool_config=PoolConfig(
            num_workers=args.workers, gpus_per_worker=args.gpus_per_worker, device=args.device or "cpu"
        ),
        on_progress=progress,
    )
    bar.close()
    print(f"corpus at {Path(args.out) / 'corpus.parquet'}: {table.num_rows} runs")
    for failure in failures:
        print(f"failed: {failure.key}: {failure.error}", file=sys.stderr)
    return 1 if failures else 0


def _cmd_corpus_refeature(args: argparse.Namespace) -> int:
    from tuneahead_ray.corpus import refeature_checkpoint, refeature_corpus

    init_ray(args)
    bar, progress = run_bar("refeatured runs")
    table, failures = refeature_corpus(
        args.corpus,
        pool_config=pool_config(args, args.device),
        row_descriptors=not args.keep_row_descriptors,
        limit=args.limit,
        on_progress=progress,
    )
    bar.close()
    if table is None:
        print(f"partial: finished runs are kept in {refeature_checkpoint(args.corpus)}.jsonl; rerun to continue")
    else:
        print(f"rewrote the features of {table.num_rows} runs in {args.corpus}")
    for failure in failures:
        print(f"failed: {failure.key}: {failure.error}", file=sys.stderr)
    return 1 if failures else 0


#: Command groups whose modules import torch, LightGBM or Ray Serve: registered in full only when used, so that
#: ``tuneahead-ray --help`` and the light commands start at once. Name -> (module, registering function, help).
_LAZY_COMMANDS: dict[str, tuple[str, str, str]] = {
    "screen": (
        "tuneahead_ray.screening._cli",
        "add_screening_commands",
        "screen a candidate grid: descriptors, probes, predictions, go/no-go and a report (resumable)",
    ),
    "launch": (
        "tuneahead_ray.screening._cli",
        "add_screening_commands",
        "train a screening's GO runs (resuming from saved probes), score them, append to a corpus",
    ),
    "demo": (
        "tuneahead_ray.screening._cli",
        "add_screening_commands",
        "screen a 224-candidate demo grid of the embedded model and write the report",
    ),
    "predictor": (
        "tuneahead_ray.predictor._cli",
        "add_predictor_commands",
        "train and evaluate the score predictor on a metadataset",
    ),
    "predict": (
        "tuneahead_ray.predictor._cli",
        "add_predictor_commands",
        "predicted score, interval and top SHAP drivers per row",
    ),
    "serve": ("tuneahead_ray.serve._cli", "add_serve_command", "the prediction service on Ray Serve"),
}


def _add_lazy_commands(sub: argparse._SubParsersAction, command: str | None) -> None:
    """The chosen command's group in full; every other lazy command as a name and help line only."""
    chosen = _LAZY_COMMANDS.get(command or "")
    if chosen is not None:
        module, function, _ = chosen
        getattr(importlib.import_module(module), function)(sub)
    for name, (module, _, help_text) in _LAZY_COMMANDS.items():
        if chosen is None or module != chosen[0]:
            sub.add_parser(name, help=help_text, add_help=False)


def _command(argv: Sequence[str]) -> str | None:
    """The sub-command named on the command line (the first argument that is not an option)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def _parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tuneahead-ray", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    command = _command(argv)

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

    features = sub.add_parser("features", help="meta-feature rows (static + probe + hp) for every grid candidate")
    features.add_argument("--grid", type=Path, required=True, help="grid YAML")
    features.add_argument(
        "--out",
        type=Path,
        help="Parquet output (default: features.parquet in the grid's output_dir, relative to the grid file)",
    )
    add_ray_args(features)
    features.set_defaults(func=_cmd_features)

    corpus = sub.add_parser("corpus", help="the corpus of completed runs").add_subparsers(dest="corpus", required=True)
    corpus_build = corpus.add_parser(
        "build", help="sample runs (the testbed's, or a grid's for any model); features + ground truth (resumable)"
    )
    corpus_build.add_argument(
        "--grid",
        type=Path,
        help="sample the runs from this grid (its model, datasets, hyperparameter space, probe and benchmark) "
        "instead of the embedded testbed",
    )
    corpus_build.add_argument("--runs", type=int, required=True, help="corpus size (existing runs are kept)")
    corpus_build.add_argument("--out", type=Path, required=True, help="directory of corpus.parquet")
    corpus_build.add_argument("--seed", type=int, default=0, help="seed of the run sample")
    corpus_build.add_argument(
        "--gpu-hours",
        type=float,
        help="with --grid: start no run once the corpus's runs have spent this many device-hours",
    )
    corpus_build.add_argument(
        "--strategy",
        choices=("random", "uncertainty", "decision"),
        help="with --grid: train runs in batches, each picked from the probed candidate pool by a predictor refit "
        "on the runs so far: at random, widest intervals first (uncertainty), or half least certain GO/NO-GO at "
        "the grid's threshold and half widest intervals (decision); prints when its estimated error stops "
        "improving. Default: one seeded random sample",
    )
    corpus_build.add_argument("--batch", type=int, default=25, help="with --strategy: runs per batch (default 25)")
    corpus_build.add_argument("--device", help="cpu, cuda or auto (default: the grid's device; testbed: cpu)")
    corpus_build.add_argument("--proxy-model", help="proxy model dir for the ProxyLM baseline (default: embedded)")
    corpus_build.add_argument("--no-proxy", action="store_true", help="skip the proxy fine-tunes")
    add_ray_args(corpus_build)
    corpus_build.set_defaults(func=_cmd_corpus_build)
    refeature = corpus.add_parser(
        "refeature", help="recompute descriptors + probe features of a corpus, keeping its ground truth (resumable)"
    )
    refeature.add_argument("--corpus", type=Path, required=True, help="corpus Parquet file, rewritten in place")
    refeature.add_argument("--device", default="cpu")
    refeature.add_argument(
        "--keep-row-descriptors",
        action="store_true",
        help="keep the stored per-row descriptors (unchanged definitions); recompute model descriptors + probe",
    )
    refeature.add_argument("--limit", type=int, help="stop after this many newly computed runs (kept; resume later)")
    add_ray_args(refeature)
    refeature.set_defaults(func=_cmd_corpus_refeature)

    _add_lazy_commands(sub, command)

    testbed = sub.add_parser("testbed", help="the embedded testbed").add_subparsers(dest="testbed", required=True)
    make = testbed.add_parser("make-data", help="write a synthetic dataset with quality knobs (chat JSONL)")
    make.add_argument("--out", type=Path, required=True)
    make.add_argument("--size", type=int, default=2000)
    make.add_argument("--families", help="weights, e.g. add=1,count=2 (default: all benchmark families)")
    make.add_argument("--min-level", type=int, default=1)
    make.add_argument("--max-level", type=int, default=5)
    make.add_argument("--label-noise", type=float, default=0.0)
    make.add_argument("--duplication", type=float, default=0.0)
    make.add_argument("--format-corruption", type=float, default=0.0)
    make.add_argument("--off-target", type=float, default=0.0)
    make.add_argument("--seed", type=int, default=0)
    make.set_defaults(func=_cmd_make_data)

    build = testbed.add_parser("build-base", help="pretrain the embedded tiny Qwen2 (reproducible)")
    build.add_argument("--out", type=Path, help="default: the package's assets directory for that size")
    build.add_argument("--size", choices=["base", "proxy"], default="base", help="proxy: the ProxyLM baseline's model")
    build.add_argument("--steps", type=int, default=1000)
    build.add_argument("--seed", type=int, default=0)
    build.set_defaults(func=_cmd_build_base)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser(argv).parse_args(argv)
    try:
        return args.func(args)
    except ValueError as err:  # ConfigError, DatasetError, ModelDirError, pydantic's ValidationError
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
