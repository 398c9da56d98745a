"""``features``: the meta-feature rows of every candidate of a grid, computed on Ray (resumable)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pyarrow as pa

from tuneahead_ray._private.cli_support import StageBars, add_ray_args, init_ray, pool_config, print_failures
from tuneahead_ray._private.workers import WorkerFailure
from tuneahead_ray.features.compute import compute_features
from tuneahead_ray.schemas import Candidate
from tuneahead_ray.screening import GridSpec, grid_output_dir, load_grid

__all__ = ["add_commands", "grid_features"]


def grid_features(
    args: argparse.Namespace, grid: GridSpec, candidates: list[Candidate], out: Path
) -> tuple[pa.Table, list[WorkerFailure]]:
    """Feature rows of a grid's candidates on Ray, resumable at ``out`` (descriptor cache beside it); failures
    are printed to stderr and returned."""
    pool = pool_config(args, grid.device)  # a bad --workers fails before Ray starts
    init_ray(args)
    table, failures = compute_features(
        candidates,
        out,
        model=grid.model,
        spec=grid.probe,
        dataset_spec=grid.dataset_probe,
        pool_config=pool,
        cache_dir=Path(out).parent / "cache",
        on_progress=StageBars(),
    )
    print_failures(failures)
    return table, failures


def _cmd_features(args: argparse.Namespace) -> int:
    grid, candidates = load_grid(args.grid)
    out = args.out or grid_output_dir(grid, args.grid) / "features.parquet"
    print(f"{len(candidates)} candidates from {args.grid}", file=sys.stderr)
    table, failures = grid_features(args, grid, candidates, out)
    print(f"wrote {table.num_rows} rows to {out}")
    return 1 if failures else 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``features`` on the main command's sub-parsers."""
    features = sub.add_parser(
        "features", help="meta-feature rows (static + dataset probe + probe + hp) for every grid candidate"
    )
    features.add_argument("--grid", type=Path, required=True, help="grid YAML")
    features.add_argument(
        "--out",
        type=Path,
        help="Parquet output (default: features.parquet in the grid's output_dir, relative to the grid file)",
    )
    add_ray_args(features)
    features.set_defaults(func=_cmd_features)
