"""The screening driver: descriptors -> (pre-screen) -> dataset probes -> probes -> predictions -> go/no-go,
checkpointed as it goes.

``screen`` is the list of its stages, each a function of the :class:`ScreeningState` they hand on: identify the
candidates, describe their datasets, choose the probes, probe the chosen candidates' datasets (the standardized
probe, once per dataset), probe, join the probe features, predict, price the runs, decide, explain.

Every probed candidate is appended to ``<out>/features.parquet``'s checkpoint the moment it finishes, and
descriptors are cached by dataset content, so a killed screening resumes without redoing work. Everything after
the probes (predictions, SHAP, the scheduler) is cheap and deterministic and is recomputed on every run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tuneahead_ray._private.store import ResultStore
from tuneahead_ray._private.workers import PoolConfig, WorkerFailure
from tuneahead_ray.constants import (
    FAILED,
    GO,
    NO_GO,
    NOT_PROBED,
    PROBED,
    STAGE_DATASET_PROBES,
    STAGE_DESCRIPTORS,
    STAGE_PROBES,
    Policy,
)
from tuneahead_ray.features import (
    STATIC_FEATURES,
    candidate_ids,
    dataset_fingerprints,
    hp_features,
    open_feature_store,
)
from tuneahead_ray.features.compute import ProgressFn, probe_datasets, run_descriptors, run_probes
from tuneahead_ray.predictor import Explainer
from tuneahead_ray.probe import ProbePool
from tuneahead_ray.schemas import Candidate
from tuneahead_ray.screening._costs import budget_seconds, dataset_probe_costs, run_costs
from tuneahead_ray.screening._grid import GridSpec
from tuneahead_ray.screening._launch import probe_state_dir
from tuneahead_ray.screening._policies import select, success_probability
from tuneahead_ray.screening._predictors import ScreeningPredictors
from tuneahead_ray.screening._result import ScreeningResult

__all__ = ["ScreeningState", "probe_set", "screen"]


@dataclass
class ScreeningState:
    """What the stages of one screening hand on: each stage reads the fields earlier stages filled in and fills its
    own. ``table`` has one row per candidate (grid order until :func:`_finish` ranks it) and gains columns stage by
    stage."""

    grid: GridSpec
    predictors: ScreeningPredictors
    out_dir: Path
    pool_config: PoolConfig | None
    on_progress: ProgressFn | None
    clock: Callable[[], float]
    started: float
    #: Dataset content fingerprint by path.
    fingerprints: dict[Path, str] = field(default_factory=dict)
    #: The candidates by content id (equal candidates merged), in grid order.
    candidates: dict[str, Candidate] = field(default_factory=dict)
    #: Static descriptors by dataset fingerprint.
    static: dict[str, dict[str, float]] = field(default_factory=dict)
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: Which rows of ``table`` are probed (all, or those in contention under ``probe_budget``).
    chosen: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    #: The probe rows' checkpoint (``<out_dir>/features.parquet``): earlier runs' probes and this one's.
    store: ResultStore | None = None
    #: The actor pool of the dataset probes and the probes (None when nothing is left to probe).
    pool: ProbePool | None = None
    #: The dataset probes' rows by dataset fingerprint (``<out_dir>/features.dataset_probes.parquet``: this run's
    #: and earlier ones').
    dataset_probes: dict[str, dict] = field(default_factory=dict)
    failures: list[WorkerFailure] = field(default_factory=list)
    #: Worker-seconds the GO runs may use (budgeted policies), from the grid's budget.
    budget_s: float | None = None
    #: The selection's facts for the summary (the budget used).
    selection: dict = field(default_factory=dict)
    #: Worker-seconds of the dataset probes, each charged once per dataset.
    dataset_probe_cost_s: float = 0.0
    explanations: dict[str, dict] = field(default_factory=dict)
    importance: dict[str, float] = field(default_factory=dict)
    #: Seconds per stage (descriptors, dataset probes, probes) and in total.
    timing_s: dict[str, float] = field(default_factory=dict)


def screen(
    grid: GridSpec,
    candidates: list[Candidate],
    predictors: ScreeningPredictors,
    out_dir: str | Path,
    *,
    pool_config: PoolConfig | None = None,
    on_progress: ProgressFn | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> ScreeningResult:
    """Screen ``candidates`` (Ray must be initialised) and return the ranked, decided table."""
    state = ScreeningState(grid, predictors, Path(out_dir), pool_config, on_progress, clock, started=clock())
    _identify(state, candidates)
    _describe(state)
    _choose_probes(state)
    _open_probe_pool(state)
    try:
        _probe_datasets(state)
        _probe(state)
    finally:
        if state.pool is not None:
            state.pool.shutdown()
    _join_probes(state)
    _predict_scores(state)
    _price(state)
    _decide_runs(state)
    _explain(state)
    return _finish(state)


def _identify(state: ScreeningState, candidates: list[Candidate]) -> None:
    """Fingerprint every dataset by content and give every candidate its content id (equal candidates merge)."""
    state.fingerprints = dataset_fingerprints(candidates)
    state.candidates = candidate_ids(candidates, state.fingerprints)


def _describe(state: ScreeningState) -> None:
    """Static descriptors once per distinct dataset (Ray Data, cached by content), then the probe-free rows."""
    grid = state.grid
    state.static = run_descriptors(
        state.candidates.values(),
        state.fingerprints,
        model=grid.model,
        cache_dir=state.out_dir / "cache",
        device=grid.device,
        on_progress=state.on_progress,
    )
    state.table = _base_rows(state.candidates, state.fingerprints, state.static)
    state.timing_s[STAGE_DESCRIPTORS] = state.clock() - state.started


def _choose_probes(state: ScreeningState) -> None:
    """The probe-free prediction (with a pre-screen predictor), and which candidates get a probe."""
    if state.predictors.prescreen is not None:
        _predict(state.table, state.predictors.prescreen, "prescreen")
    state.chosen = probe_set(state.table, state.grid, state.predictors)


def _todo(state: ScreeningState) -> dict[str, Candidate]:
    """The chosen candidates not in the probe checkpoint yet."""
    chosen = state.table["candidate_id"][state.chosen]
    return {key: state.candidates[key] for key in chosen if key not in state.store}


def _open_probe_pool(state: ScreeningState) -> None:
    """The probe checkpoint (``<out_dir>/features.parquet``) and, when a chosen candidate is not in it yet, one
    actor pool for the dataset probes and the probes (each worker loads the base model once)."""
    grid = state.grid
    state.store = open_feature_store(state.out_dir / "features.parquet", grid.probe, grid.dataset_probe)
    state.pool = ProbePool(grid.model, state.pool_config) if _todo(state) else None


def _probe_datasets(state: ScreeningState) -> None:
    """The standardized probe of every dataset with a chosen candidate not probed yet, once per dataset and
    checkpointed; its features join the dataset's descriptors, and its failure fails that dataset's candidates."""
    grid = state.grid
    started = state.clock()
    static, state.dataset_probes, state.failures = probe_datasets(
        _todo(state), state.fingerprints, state.static, state.out_dir / "features.parquet", model=grid.model,
        spec=grid.probe, dataset_spec=grid.dataset_probe, pool_config=state.pool_config,
        on_progress=state.on_progress, pool=state.pool,
    )  # fmt: skip
    state.static = {**state.static, **static}
    failed = {f.key for f in state.failures}
    state.chosen = state.chosen & ~state.table["candidate_id"].isin(failed).to_numpy()
    state.timing_s[STAGE_DATASET_PROBES] = state.clock() - started


def _probe(state: ScreeningState) -> None:
    """Probe the chosen candidates not already in the checkpoint, each row checkpointed as it finishes."""
    grid, out_dir, store = state.grid, state.out_dir, state.store
    todo = _todo(state)
    probe_started = state.clock()
    state_dirs = {key: str(probe_state_dir(out_dir, key)) for key in todo} if grid.keep_probe_state else None
    state.failures += run_probes(
        todo,
        state.fingerprints,
        state.static,
        store,
        model=grid.model,
        spec=grid.probe,
        pool_config=state.pool_config,
        state_dirs=state_dirs,
        on_progress=state.on_progress,
        pool=state.pool,
    )
    store.flush()
    state.timing_s[STAGE_PROBES] = state.clock() - probe_started


def _join_probes(state: ScreeningState) -> None:
    """The probe features joined to the rows; each row's ``stage`` (probed, failed, not probed) and error; NaN for
    the features a row lacks."""
    table, rows = state.table, state.store.rows
    probe_rows = pd.DataFrame([rows[key] for key in table["candidate_id"] if key in rows])
    probe_columns = [c for c in probe_rows.columns if c not in table.columns]
    if not probe_rows.empty:
        table = table.merge(probe_rows[["candidate_id", *probe_columns]], on="candidate_id", how="left")
    failed = {f.key: f.error for f in state.failures}
    table["error"] = [failed.get(key, "") for key in table["candidate_id"]]
    in_store = table["candidate_id"].isin(rows)
    table["stage"] = np.where(in_store, PROBED, np.where(table["error"] != "", FAILED, NOT_PROBED))
    for column in state.predictors.full.features:
        if column not in table:
            table[column] = np.nan
    diverged = table["probe_diverged"] if "probe_diverged" in table else pd.Series(0.0, index=table.index)
    table["probe_diverged"] = diverged.fillna(0).astype(bool)
    state.table = table


def _predict_scores(state: ScreeningState) -> None:
    """The full predictor's score and interval for probed rows (the probe-free one's for the rest), novelty, the
    gain over the base model and, under a threshold, the chance of success."""
    table, predictors, grid = state.table, state.predictors, state.grid
    probed = table["stage"].eq(PROBED).to_numpy()
    _predict(table, predictors.full, "predicted")
    _novelty(table, predictors.full, probed)
    if predictors.prescreen is not None:
        for suffix in ("", "_lower", "_upper"):
            table.loc[~probed, f"predicted{suffix}"] = table.loc[~probed, f"prescreen{suffix}"]
    table = table.rename(columns={"predicted_lower": "lower", "predicted_upper": "upper"})
    base_score = predictors.base_score
    table["predicted_gain"] = table["predicted"] - base_score if base_score is not None else np.nan
    if grid.threshold is not None:
        table["p_success"] = success_probability(
            table["predicted"].to_numpy(), table["lower"].to_numpy(), table["upper"].to_numpy(), grid.threshold
        )
    state.table = table


def _price(state: ScreeningState) -> None:
    """Each run's full, probe and GO-after-probe cost (worker-seconds), each dataset probe's (charged once per
    dataset), and the budget in the same unit."""
    table, grid = state.table, state.grid
    full_cost, table["probe_cost_s"], table["go_cost_s"] = run_costs(table, grid.cost)
    table["full_cost_s"] = full_cost
    probed = table.loc[table["stage"].eq(PROBED), "dataset_fingerprint"].unique()
    rows = [state.dataset_probes[key] for key in probed if key in state.dataset_probes]
    state.dataset_probe_cost_s = sum(dataset_probe_costs(rows, grid.cost))
    state.budget_s = budget_seconds(grid.budget, full_cost) if grid.budget is not None else None


def _decide_runs(state: ScreeningState) -> None:
    """GO / NO-GO under the grid's policy, with each row's reason."""
    state.selection = _decide(state.table, state.grid, state.predictors.base_score, state.budget_s)


def _explain(state: ScreeningState) -> None:
    """SHAP drivers of every prediction (the probe-free model's for unprobed rows) and the global importance."""
    table, predictors = state.table, state.predictors
    explained_rows = table[table["stage"].eq(PROBED)]
    explained, state.importance = _explanations(predictors.full, explained_rows)
    explanations = dict(zip(explained_rows["candidate_id"], explained, strict=True))
    if predictors.prescreen is not None:
        rest = table[~table["stage"].eq(PROBED)]
        more, _ = _explanations(predictors.prescreen, rest)
        explanations.update(zip(rest["candidate_id"], more, strict=True))
    ordered = [explanations.get(key) for key in table["candidate_id"]]
    table["drivers"] = [json.dumps(e["top"]) if e else "[]" for e in ordered]
    table["diagnostics"] = ["; ".join(e["diagnostics"]) if e else "" for e in ordered]
    state.explanations = explanations


def _finish(state: ScreeningState) -> ScreeningResult:
    """The ranked table, the summary (with the timings) and the per-dataset view."""
    table = _ranked(state.table)
    summary = _summary(
        table,
        state.grid,
        state.predictors.base_score,
        state.budget_s,
        state.selection,
        state.predictors,
        state.dataset_probe_cost_s,
    )
    summary["timing_s"] = {**state.timing_s, "total": state.clock() - state.started}
    return ScreeningResult(
        table=table,
        summary=summary,
        explanations=state.explanations,
        importance=state.importance,
        datasets=_datasets(table),
        failures=state.failures,
    )


def _base_rows(ids: dict[str, Candidate], fingerprints: dict, static: dict[str, dict[str, float]]) -> pd.DataFrame:
    """Probe-free rows: identity, readable hyperparameters, static descriptors and hyperparameter features."""
    rows = []
    for key, candidate in ids.items():
        fingerprint = fingerprints[candidate.dataset.path]
        descriptors = static[fingerprint]
        rows.append(
            {
                "candidate_id": key,
                "model": candidate.model,
                "dataset": str(candidate.dataset.path),
                "dataset_name": candidate.dataset.path.name,
                "dataset_fingerprint": fingerprint,
                "hp": candidate.hp.model_dump_json(),
                **{f"hp.{name}": _readable(value) for name, value in candidate.hp.model_dump().items()},
                **descriptors,
                **hp_features(candidate.hp, int(descriptors["num_rows"])),
            }
        )
    return pd.DataFrame(rows)


def _readable(value: object) -> object:
    return ",".join(value) if isinstance(value, list | tuple) else value


def probe_set(table: pd.DataFrame, grid: GridSpec, predictors: ScreeningPredictors) -> np.ndarray:
    """Which candidates to probe: all, or under ``probe_budget`` those most in contention by the probe-free model.

    Contention is the chance of success (from the probe-free interval) under a threshold, otherwise the optimistic
    end of the interval; ties keep grid order.
    """
    n = len(table)
    if grid.probe_budget is None or predictors.prescreen is None:
        return np.ones(n, dtype=bool)
    limit = int(grid.probe_budget) if grid.probe_budget > 1 else int(np.ceil(grid.probe_budget * n))
    predicted, lower, upper = table["prescreen"], table["prescreen_lower"], table["prescreen_upper"]
    if grid.threshold is not None:
        contention = success_probability(predicted.to_numpy(), lower.to_numpy(), upper.to_numpy(), grid.threshold)
    else:
        contention = upper.to_numpy()
    chosen = np.zeros(n, dtype=bool)
    chosen[np.argsort(-contention, kind="stable")[: min(limit, n)]] = True
    return chosen


def _predict(table: pd.DataFrame, predictor, prefix: str) -> None:
    lower, upper = predictor.predict_interval(table)
    table[prefix] = (lower + upper) / 2
    table[f"{prefix}_lower"], table[f"{prefix}_upper"] = lower, upper


def _novelty(table: pd.DataFrame, predictor, probed: np.ndarray) -> None:
    """``novelty`` (distance from the predictor's training runs; ~1 like them), ``novel`` (beyond the usual
    distance: the interval was widened) and ``novel_features`` (those beyond every training run) of probed rows."""
    novelty, novel, drivers = predictor.novelty_of(predictor.matrix(table))
    table["novelty"] = np.where(probed, novelty, np.nan)
    table["novel"] = novel & probed
    table["novel_features"] = [
        ", ".join(names) if flag else "" for names, flag in zip(drivers, table["novel"], strict=True)
    ]


def _explanations(predictor, table: pd.DataFrame) -> tuple[list[dict], dict[str, float]]:
    if table.empty:
        return [], {}
    explainer = Explainer(predictor)
    explained = [e.model_dump(mode="json") for e in explainer.explain(table, top_k=8, diagnostics=3)]
    return explained, explainer.global_importance(table)


def _decide(table: pd.DataFrame, grid: GridSpec, base_score: float | None, budget: float | None) -> dict:
    """Run the scheduler on the probed, non-diverged candidates; write ``decision`` and ``reason``; return the
    selection facts."""
    # A probe that diverged is a failure already seen, whatever the regressor makes of its features: never GO.
    probed = (table["stage"].eq(PROBED) & ~table["probe_diverged"].astype(bool)).to_numpy()
    predicted = table["predicted"].to_numpy(float)
    go = np.zeros(len(table), dtype=bool)
    value = np.full(len(table), np.nan)
    facts: dict = {"policy": grid.policy.value}
    if probed.any():
        selection = select(
            predicted[probed],
            table["go_cost_s"].to_numpy(float)[probed],
            policy=grid.policy,
            threshold=grid.threshold,
            base_score=base_score if base_score is not None else 0.0,
            budget=budget,
            k=grid.top_k,
            lower=table["lower"].to_numpy(float)[probed],
            upper=table["upper"].to_numpy(float)[probed],
        )
        go[probed], value[probed] = selection.go, selection.value
        facts["cost_used_s"] = selection.cost_used
    table["decision"] = np.where(go, GO, NO_GO)
    table["policy_value"] = value
    table["reason"] = [_reason(row, grid, base_score) + _novelty_note(row) for row in table.itertuples(index=False)]
    return facts


def _novelty_note(row) -> str:
    """What a decision on a candidate unlike the corpus must add: it is uncertain, and why."""
    if not row.novel:
        return ""
    where = f"; beyond its range in {row.novel_features}" if row.novel_features else ""
    if row.decision == GO:
        return f" (unlike the corpus: novelty {row.novelty:.1f}{where}; interval widened)"
    return f"; uncertain: unlike the corpus (novelty {row.novelty:.1f}{where}), the interval was widened"


def _reason(row, grid: GridSpec, base_score: float | None) -> str:
    if row.stage == FAILED:
        return f"probe failed: {row.error}"
    if row.stage == NOT_PROBED:
        return (
            f"not probed: the probe-free prediction {row.prescreen:.1f} "
            f"[{row.prescreen_lower:.1f}, {row.prescreen_upper:.1f}] left it out of the probe budget"
        )
    if row.decision == GO:
        return f"GO under {grid.policy}: predicted {row.predicted:.1f} [{row.lower:.1f}, {row.upper:.1f}]"
    if row.probe_diverged:
        return "the probe diverged (loss blew up or became NaN)"
    if grid.policy == Policy.THRESHOLD:
        return f"predicted {row.predicted:.1f} < threshold {grid.threshold:g}"
    if grid.policy == Policy.TOP_K:
        return f"not in the top {grid.top_k} predictions"
    if grid.policy == Policy.EXPECTED_GAIN and row.predicted <= (base_score or 0.0):
        return f"predicted gain {row.predicted - (base_score or 0.0):+.1f} over the base model is not positive"
    return "outside the budget: less value per unit of compute than the chosen runs"


def _ranked(table: pd.DataFrame) -> pd.DataFrame:
    """GO first, then by predicted score; ``rank`` is 1-based."""
    order = np.lexsort((table["candidate_id"].to_numpy(), -table["predicted"].to_numpy(), table["decision"] != GO))
    table = table.iloc[order].reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    return table


def _datasets(table: pd.DataFrame) -> pd.DataFrame:
    """One row per dataset: its descriptors and how its candidates fared."""
    grouped = table.groupby("dataset_name", sort=True)
    summary = grouped[list(STATIC_FEATURES)].first()
    summary["candidates"] = grouped.size()
    summary["go"] = grouped["decision"].apply(lambda d: int((d == GO).sum()))
    summary["best_predicted"] = grouped["predicted"].max()
    return summary.reset_index()


def _summary(
    table: pd.DataFrame,
    grid: GridSpec,
    base_score: float | None,
    budget: float | None,
    facts: dict,
    predictors: ScreeningPredictors,
    dataset_probes: float = 0.0,
) -> dict:
    """The screening's counts, its compute (``dataset_probes``: the dataset probes' worker-seconds, once per
    dataset) against training everything, and the selection's facts."""
    go = table["decision"].eq(GO)
    probed = table["stage"].eq(PROBED)
    train_all = float(table["full_cost_s"].sum())
    spent = float(table.loc[probed, "probe_cost_s"].sum() + table.loc[go, "go_cost_s"].sum()) + dataset_probes
    summary = {
        "candidates": len(table),
        "datasets": int(table["dataset_fingerprint"].nunique()),
        "probed": int(probed.sum()),
        "failed": int(table["stage"].eq(FAILED).sum()),
        "not_probed": int(table["stage"].eq(NOT_PROBED).sum()),
        "go": int(go.sum()),
        "novel": int(table["novel"].sum()),
        "novel_no_go": int((table["novel"] & ~go).sum()),
        "policy": grid.policy.value,
        "threshold": grid.threshold,
        "top_k": grid.top_k,
        "base_score": base_score,
        "budget_s": budget,
        "cost_model": grid.cost.model_dump(),
        "compute_s": {
            "train_everything": train_all,
            "dataset_probes": dataset_probes,
            "probes": float(table.loc[probed, "probe_cost_s"].sum()),
            "go_runs": float(table.loc[go, "go_cost_s"].sum()),
            "screening_total": spent,
        },
        "compute_saved": 1.0 - spent / train_all if train_all > 0 else 0.0,
        "predictor": {
            "card_sha256": predictors.full_card.card_sha256,
            "features": len(predictors.full.features),
            "protocol_mismatches": predictors.protocol_mismatches,
        },
        **{key: value for key, value in facts.items() if key != "policy"},
    }
    if "p_success" in table:
        summary["expected_successes"] = {
            "go": float(table.loc[go, "p_success"].sum()),
            "all": float(table["p_success"].sum()),
        }
    return summary
