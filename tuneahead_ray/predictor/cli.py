"""``predictor train``, ``predictor cv`` and ``predict``: sub-commands for the ``tuneahead-ray`` command.

Bad input raises ``ValueError`` subclasses whose messages name the file and the column; the main command prints
them as errors.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import pandas as pd

from tuneahead_ray._private.cli_support import add_ray_args
from tuneahead_ray.features import protocol_differences, protocol_mismatches, read_protocol
from tuneahead_ray.features.cli import grid_features
from tuneahead_ray.predictor._baselines import corpus_models
from tuneahead_ray.predictor._errors import MetadatasetError
from tuneahead_ray.predictor._evaluate import cross_validate, default_models
from tuneahead_ray.predictor._explain import Explainer
from tuneahead_ray.predictor._metadataset import feature_columns, load_metadataset, source_of
from tuneahead_ray.predictor._score_predictor import PredictorConfig, ScorePredictor
from tuneahead_ray.predictor._store import load_predictor, save_predictor
from tuneahead_ray.screening import grid_output_dir, load_grid

__all__ = ["add_commands"]


def _config(args: argparse.Namespace) -> PredictorConfig:
    return PredictorConfig(level=args.level, seed=args.seed, n_jobs=args.n_jobs, group=args.group)


def _dropped(args: argparse.Namespace, table: pd.DataFrame) -> list[str]:
    """``--drop`` plus the group column: a group id is a label for splitting, never a feature."""
    if args.group is None:
        return list(args.drop)
    if args.group not in table.columns:
        raise MetadatasetError(f"{source_of(table)}: no group column {args.group!r}")
    return [*args.drop, args.group]


def _finite(payload: object) -> object:
    """``payload`` with NaN and infinities as ``None``, so the output is strict JSON."""
    if isinstance(payload, float):
        return payload if math.isfinite(payload) else None
    if isinstance(payload, dict):
        return {key: _finite(value) for key, value in payload.items()}
    if isinstance(payload, list | tuple):
        return [_finite(value) for value in payload]
    return payload


def _json(payload: object) -> str:
    return json.dumps(_finite(payload), indent=2, allow_nan=False)


def _emit(text: str, out: Path | None, what: str) -> None:
    if out is None:
        print(text)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n", encoding="utf-8")
    print(f"wrote {what} to {out}")


def _load_tables(paths: list[Path], target: str | None) -> pd.DataFrame:
    """One metadataset from one or more files; rows of the same ``candidate_id`` keep the last file's version."""
    tables = [load_metadataset(path, target) for path in paths]
    if len(tables) == 1:
        return tables[0]
    table = pd.concat(tables, ignore_index=True, sort=False)
    if "candidate_id" in table.columns:
        table = table.drop_duplicates("candidate_id", keep="last").reset_index(drop=True)
    table.attrs["source"] = " + ".join(str(path) for path in paths)
    return table


def _training_protocol(paths: list[Path]) -> dict | None:
    """The feature protocol recorded beside the training files (``None``: none recorded); files recorded under
    different protocols are an error, since their features are not comparable."""
    recorded = {path: protocol for path in paths if (protocol := read_protocol(path)) is not None}
    if len(set(map(_json, recorded.values()))) > 1:
        first, *others = recorded
        differing = next(path for path in others if recorded[path] != recorded[first])
        changed = protocol_differences(recorded[first], recorded[differing])
        raise MetadatasetError(
            f"--data: {first} and {differing} were computed under different feature protocols "
            f"({'; '.join(changed)}): train on one of them, or refeature the other"
        )
    return next(iter(recorded.values()), None)


def _cmd_train(args: argparse.Namespace) -> int:
    table = _load_tables(args.data, args.target)
    protocol = _training_protocol(args.data)
    previous = None
    if args.incremental:
        # Refit the existing model's features and configuration on its data plus the new rows.
        _, previous = load_predictor(args.out)
        if previous.target != args.target:
            raise MetadatasetError(f"{args.out}: the model predicts {previous.target!r}, not {args.target!r}")
        features, config = previous.features, previous.config
        if protocol is None:
            protocol = previous.feature_protocol
        elif previous.feature_protocol is not None and protocol != previous.feature_protocol:
            changed = protocol_differences(previous.feature_protocol, protocol)
            raise MetadatasetError(
                f"--data: computed under another feature protocol than the model in {args.out} was trained on "
                f"({'; '.join(changed)}): train a new model (without --incremental) instead"
            )
    else:
        features, config = feature_columns(table, args.target, _dropped(args, table)), _config(args)
    predictor = ScorePredictor(features, config).fit(table, args.target)
    if previous is not None:
        predictor.metrics.update(
            previous_card_sha256=previous.card_sha256, previous_n_train=int(previous.metrics["n_train"])
        )
    card = save_predictor(predictor, args.out, protocol)
    summary = {
        "model_dir": str(args.out),
        "features": len(card.features),
        **card.model_dump(mode="json", include={"target", "training_data_sha256", "metrics", "interval"}),
    }
    print(_json(summary))
    return 0


def _cmd_cv(args: argparse.Namespace) -> int:
    table = _load_tables(args.data, args.target)
    config = _config(args)
    if args.baselines:  # fixed corpus feature groups: --drop does not apply
        models = corpus_models(config, table.columns)
    else:
        models = default_models(table, args.target, _dropped(args, table), config)
    report = cross_validate(
        table,
        args.target,
        splits=args.splits,
        test_size=args.test_size,
        seed=args.seed,
        group=args.group,
        models=models,
    )
    _emit(_json(report), args.out, "the cross-validation report")
    return 0


def _grid_features(args: argparse.Namespace) -> pd.DataFrame:
    """Feature rows of every candidate of ``--grid``, computed on Ray (resumable, in the grid's output_dir)."""
    grid, candidates = load_grid(args.grid)
    out = grid_output_dir(grid, args.grid) / "features.parquet"
    table, _ = grid_features(args, grid, candidates, out)
    frame = table.to_pandas()
    frame.attrs["source"] = str(out)
    return frame


def _cmd_predict(args: argparse.Namespace) -> int:
    predictor, card = load_predictor(args.model_dir)
    table = load_metadataset(args.features) if args.features is not None else _grid_features(args)
    if args.grid is not None and args.id is None:
        args.id = "candidate_id"
    used = read_protocol(args.features if args.features is not None else table.attrs["source"])
    for mismatch in protocol_mismatches(card.feature_protocol, used, card.features) if used is not None else []:
        print(f"warning: features computed otherwise than the model's training data: {mismatch}", file=sys.stderr)
    lower, upper = predictor.predict_interval(table)
    novelty, novel, drivers = predictor.novelty_of(predictor.matrix(table))
    explanations = Explainer(predictor).explain(table, top_k=args.top_k)
    if args.id and args.id not in table.columns:
        raise MetadatasetError(f"{source_of(table)}: no id column {args.id!r}")
    ids = table[args.id].tolist() if args.id else list(range(len(table)))
    rows = [
        {
            (args.id or "row"): key,
            "prediction": explanation.prediction,
            "lower": float(low),
            "upper": float(high),
            "level": card.interval.level,
            "novelty": None if math.isnan(score) else float(score),
            "novel": bool(flag),
            "novel_features": names,
            **explanation.model_dump(mode="json", include={"base_value", "top", "diagnostics"}),
        }
        for key, low, high, score, flag, names, explanation in zip(
            ids, lower, upper, novelty, novel, drivers, explanations, strict=True
        )
    ]
    _emit(_json(rows), args.out, f"{len(rows)} predictions")
    return 0


def _add_table_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        type=Path,
        required=True,
        action="append",
        help="metadataset: .csv, .parquet or .jsonl; repeat to join several (e.g. the corpus and launch outcomes)",
    )
    parser.add_argument("--target", required=True, help="numeric column to predict (e.g. score)")
    parser.add_argument("--group", help="column of groups held out together (e.g. family_group); not a feature")
    parser.add_argument("--drop", nargs="+", action="extend", default=[], metavar="COL", help="columns to ignore")
    parser.add_argument("--level", type=float, default=0.9, help="prediction-interval coverage level")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-jobs", type=int, default=1, help="LightGBM threads")


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``predictor train``, ``predictor cv`` and ``predict`` on the main command's sub-parsers."""
    predictor = subparsers.add_parser("predictor", help="train and evaluate the score predictor on a metadataset")
    commands = predictor.add_subparsers(dest="predictor", required=True)

    train = commands.add_parser("train", help="fit the predictor and save it (LightGBM text model + JSON card)")
    _add_table_args(train)
    train.add_argument("--out", type=Path, required=True, help="model directory")
    train.add_argument(
        "--incremental",
        action="store_true",
        help="refit the model in --out (same features and settings) on --data, e.g. the corpus plus new outcomes",
    )
    train.set_defaults(func=_cmd_train)

    cv = commands.add_parser("cv", help="repeated held-out evaluation, printed as JSON")
    _add_table_args(cv)
    cv.add_argument("--splits", type=int, default=5, help="random held-out splits")
    cv.add_argument("--test-size", type=float, default=0.28, help="held-out share of each split")
    cv.add_argument("--baselines", action="store_true", help="TuneAhead on corpus features + every baseline")
    cv.add_argument("--out", type=Path, help="write the JSON here instead of printing it")
    cv.set_defaults(func=_cmd_cv)

    predict = subparsers.add_parser("predict", help="predicted score, interval and top SHAP drivers per row")
    predict.add_argument("--model-dir", type=Path, required=True, help="directory written by predictor train")
    rows = predict.add_mutually_exclusive_group(required=True)
    rows.add_argument("--features", type=Path, help="rows to predict: .csv, .parquet or .jsonl")
    rows.add_argument("--grid", type=Path, help="grid YAML: compute its candidates' features on Ray, then predict")
    predict.add_argument("--id", help="column identifying each row in the output (default: row number)")
    predict.add_argument("--top-k", type=int, default=5, help="drivers listed per row")
    predict.add_argument("--out", type=Path, help="write the JSON here instead of printing it")
    add_ray_args(predict)
    predict.set_defaults(func=_cmd_predict)
