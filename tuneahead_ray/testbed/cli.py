"""``testbed make-data`` and ``testbed build-base``: the embedded testbed's datasets and tiny base models."""

from __future__ import annotations

import argparse
from pathlib import Path

from tuneahead_ray.base_models import default_model_dir, default_proxy_dir
from tuneahead_ray.testbed._generator import DataSpec, write_dataset
from tuneahead_ray.testbed._pretrain import MODEL_SIZES, build_base

__all__ = ["add_commands"]


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
    out = args.out or (default_model_dir() if args.size == "base" else default_proxy_dir(args.size))
    out = build_base(out, steps=args.steps, seed=args.seed, size=args.size)
    print(f"saved the tiny Qwen2 to {out}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``testbed make-data`` and ``testbed build-base`` on the main command's sub-parsers."""
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
    build.add_argument(
        "--size",
        choices=list(MODEL_SIZES),
        default="base",
        help="proxy / strong-proxy: the ProxyLM baseline's models (docs/testbed.md)",
    )
    build.add_argument("--steps", type=int, default=1000)
    build.add_argument("--seed", type=int, help="default: the size's pretraining seed")
    build.set_defaults(func=_cmd_build_base)
