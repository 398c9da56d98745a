"""``report.html``: one self-contained page (inline CSS and SVG, no scripts, no network) rendered with Jinja2."""

from __future__ import annotations

from importlib.resources import files

import jinja2
import pandas as pd

from tuneahead_ray.constants import GO, Policy
from tuneahead_ray.predictor import FEATURE_LABELS
from tuneahead_ray.report._plots import frontier_svg, importance_svg, score_vs_cost_svg, waterfall_svg
from tuneahead_ray.screening import ScreeningResult

__all__ = ["HTML_ROWS", "render_html"]

#: Candidates shown in the HTML table (all of them are in the Parquet and JSON files).
HTML_ROWS = 500

#: What each policy's value is, on the frontier plot's axis.
_VALUE_LABELS: dict[Policy, str] = {
    Policy.THRESHOLD: "predicted score above the threshold",
    Policy.TOP_K: "predicted score",
    Policy.EXPECTED_GAIN: "predicted gain (pp)",
    Policy.SUCCESS_PROBABILITY: "expected successes",
}


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(lambda name: files("tuneahead_ray.report").joinpath(name).read_text("utf-8")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["num"] = lambda value, digits=1: "–" if value is None else f"{value:,.{digits}f}"
    env.filters["pct"] = lambda value: "–" if value is None else f"{100 * value:.1f}%"
    env.filters["duration"] = _duration
    env.globals["GO"] = GO
    return env


def render_html(payload: dict, result: ScreeningResult) -> str:
    """The report page for a screening (``payload`` is :func:`report_payload`'s dict)."""
    summary = payload["summary"]
    table = result.table
    waterfalls = [
        (key, waterfall_svg(explanation, f"#{_rank(table, key)} {key[:10]}"))
        for key, explanation in payload["explanations"].items()
    ]
    figures = {
        "score_vs_cost": score_vs_cost_svg(table, summary["threshold"], summary["base_score"]),
        "frontier": frontier_svg(table, summary["budget_s"], _VALUE_LABELS[Policy(summary["policy"])]),
        "importance": importance_svg(payload["importance"], FEATURE_LABELS) if payload["importance"] else "",
    }
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            report=payload,
            summary=summary,
            candidates=payload["candidates"][:HTML_ROWS],
            hidden_rows=max(0, len(payload["candidates"]) - HTML_ROWS),
            figures=figures,
            waterfalls=waterfalls,
            reasons={row["candidate_id"]: row["reason"] for row in payload["candidates"]},
        )
    )


def _duration(seconds: float | None) -> str:
    """Worker-time in the unit that reads best: seconds, minutes or hours."""
    if seconds is None:
        return "–"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:,.1f} h"


def _rank(table: pd.DataFrame, key: str) -> int:
    return int(table.loc[table["candidate_id"] == key, "rank"].iloc[0])
