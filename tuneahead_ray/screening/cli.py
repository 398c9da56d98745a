"""``screen``, ``launch`` and ``demo``: sub-commands of the ``tuneahead-ray`` command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tuneahead_ray._private.cli_support import StageBars, add_ray_args, init_ray, pool_config, print_failures, run_bar
from tuneahead_ray.constants import Policy
from tuneahead_ray.report import write_report
from tuneahead_ray.screening._demo import write_demo
from tuneahead_ray.screening._driver import screen
from tuneahead_ray.screening._grid import grid_output_dir, load_grid
from tuneahead_ray.screening._launch import check_finished_screening, launch
from tuneahead_ray.screening._predictors import load_predictors
from tuneahead_ray.yaml_config import ConfigError

__all__ = ["add_commands", "run_screening"]


def _output_dir(args: argparse.Namespace, grid, grid_path: Path) -> Path:
    return args.out if args.out is not None else grid_output_dir(grid, grid_path)


def run_screening(grid_path: Path, args: argparse.Namespace) -> int:
    """Load and check the grid, screen it and write the report; prints where everything went."""
    grid, candidates = load_grid(grid_path)
    overrides = {key: getattr(args, key) for key in ("probe_budget", "policy") if getattr(args, key) is not None}
    if overrides:
        grid = grid.model_validate({**grid.model_dump(), **overrides})
    errors = grid.screening_errors()
    if errors:
        raise ConfigError(f"{grid_path}: cannot screen:\n  " + "\n  ".join(errors))
    pool = pool_config(args, grid.device)  # a bad --workers fails before anything is written or started
    out = _output_dir(args, grid, grid_path)
    out.mkdir(parents=True, exist_ok=True)
    (out / "grid.json").write_text(grid.model_dump_json(indent=2) + "\n", encoding="utf-8")
    print(f"{len(candidates)} candidates from {grid_path} -> {out}", file=sys.stderr)
    predictors = load_predictors(grid, grid_path.resolve().parent, prescreen=grid.probe_budget is not None)
    for mismatch in predictors.protocol_mismatches:
        print(
            f"warning: {grid_path}: features are computed otherwise than for the predictor's training data, so its "
            f"predictions may be off: {mismatch}",
            file=sys.stderr,
        )
    init_ray(args)
    result = screen(grid, candidates, predictors, out, pool_config=pool, on_progress=StageBars())
    paths = write_report(result, grid, out)
    summary = result.summary
    print(
        f"GO {summary['go']} of {summary['candidates']} candidates ({summary['probed']} probed); "
        f"compute saved vs training everything: {100 * summary['compute_saved']:.1f}%"
    )
    if summary["novel"]:
        print(
            f"{summary['novel']} candidates lie unlike the predictor's corpus ({summary['novel_no_go']} of them "
            "NO-GO): their predictions are uncertain and their intervals widened (see novel_features in the report)"
        )
    for kind, path in paths.items():
        print(f"  {kind:8s} {path}")
    return print_failures(result.failures)


def _cmd_screen(args: argparse.Namespace) -> int:
    return run_screening(args.grid, args)


def _cmd_demo(args: argparse.Namespace) -> int:
    grid_path = write_demo(args.dir)
    print(f"demo grid and datasets in {args.dir}", file=sys.stderr)
    return run_screening(grid_path, args)


def _cmd_launch(args: argparse.Namespace) -> int:
    check_finished_screening(args.screening)  # before Ray starts
    pool = pool_config(args, args.device)
    outcomes = args.outcomes or args.screening / "outcomes.parquet"
    init_ray(args)
    bar, progress = run_bar("GO runs")

    table, failures = launch(args.screening, outcomes, limit=args.limit, pool_config=pool, on_progress=progress)
    bar.close()
    if len(table):
        error = table["score"] - table["screened_prediction"]
        print(f"{'candidate':12s} {'predicted':>9s} {'actual':>7s} {'error':>6s}  resumed")
        for row, err in zip(table.itertuples(index=False), error, strict=True):
            print(
                f"{row.candidate_id[:12]:12s} {row.screened_prediction:9.1f} {row.score:7.1f} {err:+6.1f}  "
                f"{'yes' if row.resumed_from_probe else 'no'}"
            )
        print(
            f"{len(table)} outcomes in {outcomes} (RMSE of the screening's predictions {(error**2).mean() ** 0.5:.2f})"
        )
        print(
            "fold them into the predictor: tuneahead-ray predictor train --incremental --data <corpus> "
            f"--data {outcomes} --target score --out <model dir>"
        )
    return print_failures(failures)


def _add_screen_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, help="output directory (default: the grid's output_dir)")
    parser.add_argument("--probe-budget", type=float, help="probe at most N candidates (> 1) or this share (<= 1)")
    parser.add_argument("--policy", choices=Policy.names(), help="override the grid's")
    add_ray_args(parser)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``screen``, ``launch`` and ``demo`` on the main command's sub-parsers."""
    screen = subparsers.add_parser(
        "screen", help="screen a candidate grid: descriptors, probes, predictions, go/no-go and a report (resumable)"
    )
    screen.add_argument("grid", type=Path, help="grid YAML")
    _add_screen_args(screen)
    screen.set_defaults(func=_cmd_screen)

    launch = subparsers.add_parser(
        "launch", help="train a screening's GO runs (resuming from saved probes), score them, append to a corpus"
    )
    launch.add_argument("screening", type=Path, help="output directory of a finished `screen`")
    launch.add_argument(
        "--outcomes", type=Path, help="corpus Parquet to append to (default: <screening>/outcomes.parquet)"
    )
    launch.add_argument("--limit", type=int, help="train only the first N GO runs (by rank)")
    launch.add_argument("--device", default="auto", help="auto, cpu or cuda")
    add_ray_args(launch)
    launch.set_defaults(func=_cmd_launch)

    demo = subparsers.add_parser(
        "demo", help="screen a 224-candidate demo grid of the embedded model and write the report"
    )
    demo.add_argument("--dir", type=Path, default=Path("tuneahead-demo"), help="where the demo grid and data go")
    _add_screen_args(demo)
    demo.set_defaults(func=_cmd_demo)
