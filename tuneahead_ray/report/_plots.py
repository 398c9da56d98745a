"""Report figures as inline SVG (matplotlib, Agg): they need no network and no files beside the report."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from tuneahead_ray.constants import GO, NO_GO

__all__ = ["frontier_svg", "importance_svg", "score_vs_cost_svg", "waterfall_svg"]

_GO_COLOR, _NO_GO_COLOR = "#1b7f3b", "#9aa3ad"


def _svg(figure) -> str:
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})  # reproducible bytes
    plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog: the SVG is embedded in HTML


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    plt.rcParams["svg.fonttype"] = "none"  # text stays text: smaller and searchable
    plt.rcParams["svg.hashsalt"] = "tuneahead"  # deterministic ids: the same screening gives the same report
    return plt.subplots(figsize=(width, height))


def _time_unit(seconds: np.ndarray) -> tuple[float, str]:
    """Divisor and name of the unit that reads best for these worker-seconds."""
    largest = float(np.nanmax(seconds)) if len(seconds) else 0.0
    if largest < 120:
        return 1.0, "worker-seconds"
    return (60.0, "worker-minutes") if largest < 7200 else (3600.0, "worker-hours")


def score_vs_cost_svg(table: pd.DataFrame, threshold: float | None, base_score: float | None) -> str:
    """Predicted score against full-run cost, GO runs highlighted, with their intervals."""
    figure, axes = _figure(7.5, 4.2)
    go = table["decision"].eq(GO).to_numpy()
    divisor, unit = _time_unit(table["full_cost_s"].to_numpy(float))
    cost = table["full_cost_s"].to_numpy(float) / divisor
    predicted = table["predicted"].to_numpy(float)
    errors = np.vstack([predicted - table["lower"].to_numpy(float), table["upper"].to_numpy(float) - predicted])
    for mask, color, label in ((~go, _NO_GO_COLOR, NO_GO), (go, _GO_COLOR, GO)):
        if mask.any():
            axes.errorbar(
                cost[mask],
                predicted[mask],
                yerr=errors[:, mask],
                fmt="o",
                ms=3.5,
                color=color,
                ecolor=color,
                elinewidth=0.6,
                alpha=0.75,
                label=f"{label} ({int(mask.sum())})",
            )
    if threshold is not None:
        axes.axhline(threshold, color="#c0392b", ls="--", lw=1, label=f"threshold {threshold:g}")
    if base_score is not None:
        axes.axhline(base_score, color="#555", ls=":", lw=1, label=f"base model {base_score:.1f}")
    axes.set_xlabel(f"full-run cost ({unit})")
    axes.set_ylabel("predicted score (90% interval)")
    axes.legend(loc="best", fontsize=8)
    axes.grid(alpha=0.25)
    return _svg(figure)


def frontier_svg(table: pd.DataFrame, budget_s: float | None, value_label: str) -> str:
    """The budget frontier: best cumulative value reachable per cumulative compute (greedy by value per cost)."""
    figure, axes = _figure(7.5, 3.4)
    value = table["policy_value"].to_numpy(float)
    divisor, unit = _time_unit(np.r_[table["go_cost_s"].to_numpy(float).sum(), budget_s or 0.0])
    cost = table["go_cost_s"].to_numpy(float) / divisor
    useful = np.isfinite(value) & (value > 0)
    order = np.argsort(-value[useful] / np.maximum(cost[useful], 1e-12), kind="stable")
    axes.plot(
        np.r_[0, np.cumsum(cost[useful][order])],
        np.r_[0, np.cumsum(value[useful][order])],
        color="#2c5d8a",
        lw=1.5,
        label="frontier (greedy by value per cost)",
    )
    go = table["decision"].eq(GO).to_numpy() & np.isfinite(value)
    axes.plot([cost[go].sum()], [value[go].sum()], "o", color=_GO_COLOR, label="chosen GO set")
    if budget_s is not None:
        axes.axvline(budget_s / divisor, color="#c0392b", ls="--", lw=1, label="budget")
    axes.set_xlabel(f"compute of the GO runs ({unit})")
    axes.set_ylabel(f"cumulative {value_label}")
    axes.legend(loc="lower right", fontsize=8)
    axes.grid(alpha=0.25)
    return _svg(figure)


def waterfall_svg(explanation: dict, title: str) -> str:
    """SHAP waterfall: from the model's base value, each top driver's signed push, to the prediction."""
    top = explanation["top"][::-1]
    figure, axes = _figure(6.5, 0.34 * len(top) + 1.0)
    rest = explanation["prediction"] - explanation["base_value"] - sum(c["contribution"] for c in top)
    labels = ["other features", *(f"{c['label']} = {_value(c['value'])}" for c in top)]
    pushes = [rest, *(c["contribution"] for c in top)]
    start = explanation["base_value"]
    for row, push in enumerate(pushes):
        axes.barh(row, push, left=start, color=_GO_COLOR if push >= 0 else "#c0392b", height=0.6)
        axes.text(start + push, row, f" {push:+.1f}", va="center", ha="left" if push >= 0 else "right", fontsize=7)
        start += push
    axes.set_yticks(range(len(labels)), labels, fontsize=7)
    axes.axvline(explanation["base_value"], color="#555", lw=0.8, ls=":")
    axes.set_title(f"{title}: {explanation['base_value']:.1f} → {explanation['prediction']:.1f}", fontsize=9)
    axes.grid(axis="x", alpha=0.25)
    return _svg(figure)


def importance_svg(importance: dict[str, float], labels: dict[str, str], count: int = 12) -> str:
    """Mean |SHAP| of the strongest features over the screened candidates."""
    items = list(importance.items())[:count][::-1]
    figure, axes = _figure(6.5, 0.3 * len(items) + 0.8)
    axes.barh([labels.get(name, name) for name, _ in items], [value for _, value in items], color="#2c5d8a")
    axes.set_xlabel("mean |SHAP| (score units)")
    axes.tick_params(axis="y", labelsize=7)
    axes.grid(axis="x", alpha=0.25)
    return _svg(figure)


def _value(value: float | None) -> str:
    return "missing" if value is None or not np.isfinite(value) else f"{value:.3g}"
