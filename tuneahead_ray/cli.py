"""The ``tuneahead-ray`` command: it only assembles the command groups each package defines in its ``cli`` module."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["main"]

#: Command name -> (the module whose ``add_commands`` registers it, its help line). A module is imported only when
#: one of its commands runs, so ``tuneahead-ray --help`` and the light commands start at once.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": (
        "tuneahead_ray.screening.cli",
        "screen a 224-candidate demo grid of the embedded model and write the report",
    ),
    "screen": (
        "tuneahead_ray.screening.cli",
        "screen a candidate grid: descriptors, probes, predictions, go/no-go and a report (resumable)",
    ),
    "launch": (
        "tuneahead_ray.screening.cli",
        "train a screening's GO runs (resuming from saved probes), score them, append to a corpus",
    ),
    "predict": ("tuneahead_ray.predictor.cli", "predicted score, interval and top SHAP drivers per row"),
    "predictor": ("tuneahead_ray.predictor.cli", "train and evaluate the score predictor on a metadataset"),
    "serve": ("tuneahead_ray.serve.cli", "the prediction service on Ray Serve"),
    "features": ("tuneahead_ray.features.cli", "meta-feature rows (static + probe + hp) for every grid candidate"),
    "corpus": ("tuneahead_ray.corpus.cli", "the corpus of completed runs"),
    "run": ("tuneahead_ray.probe.cli", "one full LoRA fine-tuning run + benchmark score, printed as JSON"),
    "testbed": ("tuneahead_ray.testbed.cli", "the embedded testbed"),
}


def _command(argv: Sequence[str]) -> str | None:
    """The sub-command named on the command line (the first argument that is not an option)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def _parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The chosen command's group in full; every other command as a name and help line only."""
    parser = argparse.ArgumentParser(prog="tuneahead-ray", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    chosen = COMMANDS.get(_command(argv) or "", ("", ""))[0]
    for name, (module, help_text) in COMMANDS.items():
        if module != chosen:
            sub.add_parser(name, help=help_text, add_help=False)
        elif name not in sub.choices:
            importlib.import_module(module).add_commands(sub)
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
