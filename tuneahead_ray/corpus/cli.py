"""``corpus build`` and ``corpus refeature``: the corpus of completed runs the predictor learns from."""

from __future__ import annotations

import argparse
from pathlib import Path

from tuneahead_ray._private.cli_support import StageBars, add_ray_args, init_ray, pool_config, print_failures, run_bar
from tuneahead_ray.base_models import default_proxy_dir, resolve_model_dir
from tuneahead_ray.corpus._build import build_corpus
from tuneahead_ray.corpus._grid import build_grid_corpus
from tuneahead_ray.corpus._grid_active import ActiveHistory, build_active_corpus
from tuneahead_ray.corpus._refeature import refeature_checkpoint, refeature_corpus
from tuneahead_ray.evaluation import default_benchmark_spec
from tuneahead_ray.screening import load_grid

__all__ = ["add_commands"]


def _print_history(history: ActiveHistory, out: Path) -> None:
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
    grid, candidates = load_grid(args.grid)
    if grid.benchmark is None:
        default_benchmark_spec(grid.model)  # a model directory needs a benchmark: say so before anything runs
    if args.strategy == "decision" and grid.threshold is None:
        raise ValueError(f"{args.grid}: threshold: --strategy decision needs the grid's success threshold")
    pool = pool_config(args, grid.device if args.device is None else args.device)
    init_ray(args)
    bar, progress = run_bar("corpus runs")
    options = {
        "seed": args.seed,
        "gpu_hours": args.gpu_hours,
        "pool_config": pool,
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
    return print_failures(report.failures)


def _cmd_corpus_build(args: argparse.Namespace) -> int:
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

    proxy = None if args.no_proxy else str(resolve_model_dir(args.proxy_model or default_proxy_dir("proxy")))
    strong = (
        None if args.no_proxy else str(resolve_model_dir(args.strong_proxy_model or default_proxy_dir("strong-proxy")))
    )
    pool = pool_config(args, args.device or "cpu")
    init_ray(args)
    bar, progress = run_bar("corpus runs")

    table, failures = build_corpus(
        args.runs,
        args.out,
        seed=args.seed,
        proxy_model=proxy,
        strong_proxy_model=strong,
        pool_config=pool,
        on_progress=progress,
    )
    bar.close()
    print(f"corpus at {Path(args.out) / 'corpus.parquet'}: {table.num_rows} runs")
    return print_failures(failures)


def _cmd_corpus_refeature(args: argparse.Namespace) -> int:
    pool = pool_config(args, args.device)
    init_ray(args)
    bar, progress = run_bar("refeatured runs")
    table, failures = refeature_corpus(
        args.corpus,
        pool_config=pool,
        row_descriptors=not args.keep_row_descriptors,
        only_row_descriptors=args.only_row_descriptors,
        limit=args.limit,
        on_progress=progress,
    )
    bar.close()
    if table is None:
        checkpoint = refeature_checkpoint(args.corpus, args.only_row_descriptors)
        print(f"partial: finished runs are kept in {checkpoint}.jsonl; rerun to continue")
    else:
        print(f"rewrote the features of {table.num_rows} runs in {args.corpus}")
    return print_failures(failures)


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``corpus build`` and ``corpus refeature`` on the main command's sub-parsers."""
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
    corpus_build.add_argument(
        "--proxy-model", help="proxy model dir of the ProxyLM baseline (default: the embedded 7%% proxy)"
    )
    corpus_build.add_argument(
        "--strong-proxy-model",
        help="model dir of the StrongProxyLM baseline's proxy (default: the embedded 19%% strong proxy)",
    )
    corpus_build.add_argument("--no-proxy", action="store_true", help="skip both proxies' fine-tunes")
    add_ray_args(corpus_build)
    corpus_build.set_defaults(func=_cmd_corpus_build)
    refeature = corpus.add_parser(
        "refeature", help="recompute descriptors + probe features of a corpus, keeping its ground truth (resumable)"
    )
    refeature.add_argument("--corpus", type=Path, required=True, help="corpus Parquet file, rewritten in place")
    refeature.add_argument("--device", default="cpu")
    which = refeature.add_mutually_exclusive_group()
    which.add_argument(
        "--keep-row-descriptors",
        action="store_true",
        help="keep the stored per-row descriptors (unchanged definitions); recompute model descriptors + probe",
    )
    which.add_argument(
        "--only-row-descriptors",
        action="store_true",
        help="recompute only the per-row descriptors (one was added or changed); keep model descriptors + probes",
    )
    refeature.add_argument("--limit", type=int, help="stop after this many newly computed runs (kept; resume later)")
    add_ray_args(refeature)
    refeature.set_defaults(func=_cmd_corpus_refeature)
