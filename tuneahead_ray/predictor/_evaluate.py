"""Held-out evaluation: repeated (grouped) splits, accuracy and interval coverage, and go/no-go figures."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupShuffleSplit, ShuffleSplit

from tuneahead_ray.predictor._baselines import IntervalModel, ScoreModel, TrainMean
from tuneahead_ray.predictor._conformal import interval_coverage
from tuneahead_ray.predictor._errors import MetadatasetError
from tuneahead_ray.predictor._metadataset import feature_columns, source_of, target_values
from tuneahead_ray.predictor._score_predictor import PredictorConfig, ScorePredictor

__all__ = ["WITHIN_PP", "cross_validate", "default_models", "evaluation_splits", "go_no_go", "regression_metrics"]

#: Tolerances (target units, pp for scores) of the "within ±k" accuracy shares.
WITHIN_PP = (1, 2, 3)


def regression_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, lower: np.ndarray | None = None, upper: np.ndarray | None = None
) -> dict[str, float]:
    """RMSE, R², RMSE / target std, shares within ±1/±2/±3, and interval coverage and width when given."""
    y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    error = y_pred - y_true
    rmse = float(np.sqrt(np.mean(error**2)))
    spread = float(np.std(y_true))
    metrics = {
        "rmse": rmse,
        "r2": 1.0 - float(np.sum(error**2) / np.sum((y_true - y_true.mean()) ** 2)) if spread > 0 else float("nan"),
        "rmse_over_std": rmse / spread if spread > 0 else float("nan"),
        **{f"within_{k}pp": float(np.mean(np.abs(error) <= k)) for k in WITHIN_PP},
    }
    if lower is not None and upper is not None:
        metrics["coverage"] = interval_coverage(y_true, lower, upper)
        metrics["interval_width"] = float(np.mean(np.asarray(upper) - np.asarray(lower)))
    return metrics


def evaluation_splits(
    n: int, splits: int, test_size: float, seed: int, groups: np.ndarray | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``splits`` random (train, test) index pairs; with ``groups`` whole groups are held out (unseen groups)."""
    if groups is None:
        return list(ShuffleSplit(splits, test_size=test_size, random_state=seed).split(np.zeros(n)))
    splitter = GroupShuffleSplit(splits, test_size=test_size, random_state=seed)
    return list(splitter.split(np.zeros(n), groups=groups))


def default_models(
    table: pd.DataFrame, target: str, drop: Sequence[str] = (), config: PredictorConfig | None = None
) -> dict[str, Callable[[], ScoreModel]]:
    """TuneAhead's regressor on every numeric feature column of ``table`` (see ``feature_columns``) and the mean."""
    features = feature_columns(table, target, drop)
    return {"TuneAhead": lambda: ScorePredictor(features, config), "TrainMean": TrainMean}


def _group_values(table: pd.DataFrame, group: str | None) -> np.ndarray | None:
    if group is None:
        return None
    if group not in table.columns:
        raise MetadatasetError(f"{source_of(table)}: no group column {group!r}")
    return table[group].to_numpy()


def cross_validate(
    table: pd.DataFrame,
    target: str,
    splits: int = 5,
    test_size: float = 0.28,
    seed: int = 0,
    group: str | None = None,
    models: Mapping[str, Callable[[], ScoreModel]] | None = None,
    return_predictions: bool = False,
) -> dict:
    """Every model fitted and scored on exactly the same held-out splits.

    Returns ``per_split`` metrics (and, with ``return_predictions``, the test row positions, true values,
    predictions and intervals), and their ``mean`` and ``std`` over splits, per model. ``models`` maps display
    names to factories of unfitted models (default: :func:`default_models`, without the group column).
    """
    y = target_values(table, target)
    groups = _group_values(table, group)
    if models is None:
        models = default_models(table, target, drop=(group,) if group else ())
    per_split = []
    for index, (train, test) in enumerate(evaluation_splits(len(y), splits, test_size, seed, groups)):
        train_table, test_table = table.iloc[train], table.iloc[test]
        record: dict = {"split": index, "n_train": len(train), "n_test": len(test), "models": {}}
        if return_predictions:
            record.update(test_rows=test.tolist(), y_true=y[test].tolist(), predictions={}, intervals={})
        for name, make in models.items():
            model = make().fit(train_table, target)
            prediction = model.predict(test_table)
            lower, upper = model.predict_interval(test_table) if isinstance(model, IntervalModel) else (None, None)
            record["models"][name] = regression_metrics(y[test], prediction, lower, upper)
            if return_predictions:
                record["predictions"][name] = prediction.tolist()
                if lower is not None:
                    record["intervals"][name] = [lower.tolist(), upper.tolist()]
        per_split.append(record)
    summary = {
        name: pd.DataFrame([record["models"][name] for record in per_split]).agg(["mean", "std"]) for name in models
    }
    return {
        "target": target,
        "splits": splits,
        "test_size": test_size,
        "seed": seed,
        "group": group,
        "rows": len(y),
        "per_split": per_split,
        "mean": {name: frame.loc["mean"].to_dict() for name, frame in summary.items()},
        "std": {name: frame.loc["std"].to_dict() for name, frame in summary.items()},
    }


def go_no_go(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    threshold: float,
    probe_cost: np.ndarray,
    full_cost: np.ndarray,
    screen_overhead: np.ndarray | None = None,
) -> dict[str, float]:
    """Screening at ``threshold``: GO when the predicted score is at least ``threshold``.

    A success is a run whose true score reaches the threshold. Every run pays its probe, and a GO run continues
    from it, paying ``full_cost - probe_cost`` more; ``screen_overhead`` is screening work a GO run cannot reuse
    (computing descriptors, a proxy fine-tune), also paid by every run. Saved = 1 - what screening spends / the
    cost of training every run in full.
    """
    y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    probe_cost, full_cost = np.asarray(probe_cost, dtype=float), np.asarray(full_cost, dtype=float)
    overhead = np.zeros_like(full_cost) if screen_overhead is None else np.asarray(screen_overhead, dtype=float)
    go, success = y_pred >= threshold, y_true >= threshold
    spent = probe_cost.sum() + overhead.sum() + (full_cost - probe_cost)[go].sum()
    return {
        "threshold": float(threshold),
        "runs": len(y_true),
        "success_share": float(success.mean()),
        "go_share": float(go.mean()),
        "successes_kept": float(go[success].mean()) if success.any() else float("nan"),
        "failures_skipped": float((~go[~success]).mean()) if (~success).any() else float("nan"),
        "compute_saved": float(1.0 - spent / full_cost.sum()),
    }
