"""A Ray Tune trial scheduler that stops trials the predictor rejects after their probe.

A trial reports its probe's meta-feature row (static descriptors + probe features + hyperparameter features, as
:func:`tuneahead_ray.features.compute.feature_row` builds it) under :data:`FEATURES_KEY` in one result, usually
the one at the end of its first K steps. On that result the scheduler asks the predictor for the final score's
interval and decides GO / NO-GO under the policies of ``screen`` (:mod:`tuneahead_ray.screening`);
a NO-GO trial is stopped. Every other callback, and every decision on a GO trial, is the wrapped base
scheduler's (FIFO, ASHA, ...).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from ray.tune import Callback
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from tuneahead_ray.constants import BUDGETED_POLICIES, GO, NO_GO, THRESHOLD_POLICIES, Policy
from tuneahead_ray.screening import CostModel, run_costs, select
from tuneahead_ray.tune._predict import IntervalPredictor, default_predictor

__all__ = ["FEATURES_KEY", "PredictionCallback", "TrialPrediction", "TuneAheadScheduler", "features_of"]

#: The result key of a trial's meta-feature row (a dict; Tune hands schedulers ``FEATURES_KEY/<name>`` keys).
FEATURES_KEY = "tuneahead_features"


@dataclass(frozen=True)
class TrialPrediction:
    """The scheduler's answer for one trial: the predicted final score and its interval, the decision, the
    policy's value, the estimated worker-seconds of the rest of the run (budgeted policies) and why."""

    predicted: float
    lower: float
    upper: float
    go: bool
    value: float
    cost_s: float
    reason: str

    def columns(self) -> dict[str, float | str]:
        """The result columns :class:`PredictionCallback` adds to the trial's results."""
        return {
            "tuneahead_predicted": self.predicted,
            "tuneahead_lower": self.lower,
            "tuneahead_upper": self.upper,
            "tuneahead_decision": GO if self.go else NO_GO,
        }


def features_of(result: Mapping[str, Any]) -> dict[str, Any] | None:
    """The meta-feature row a result carries (nested under :data:`FEATURES_KEY`, or flattened by Tune), or None."""
    nested = result.get(FEATURES_KEY)
    if isinstance(nested, Mapping):
        return dict(nested)
    prefix = FEATURES_KEY + "/"
    flat = {key[len(prefix) :]: value for key, value in result.items() if key.startswith(prefix)}
    return flat or None


class TuneAheadScheduler(TrialScheduler):
    """Stops the trials predicted NO-GO after their probe; everything else is ``base``'s (default FIFO).

    Decisions are online: trials arrive one by one and a GO is never revoked (the base scheduler may still stop a
    GO trial later, as it would without this one). A trial whose probe diverged is NO-GO, as in ``screen``.
    For each arriving prediction:

    * ``threshold``: GO when the predicted score >= ``threshold`` — exactly ``screen``'s rule.
    * ``top_k``: GO when :func:`~tuneahead_ray.screening.select` would put the trial among the ``k`` best of
      every prediction seen so far (itself included) and fewer than ``k`` trials are GO yet.
    * ``expected_gain`` / ``success_probability``: GO when ``select``'s greedy knapsack over every prediction
      seen so far, with the whole ``budget``, picks the trial (so its value is positive and its value per
      second competes with those seen), and its estimated cost fits in the budget not yet committed. The cost of
      a GO trial is the rest of its run (full-run estimate under ``cost`` minus the probe, as in ``screen``),
      committed when it goes on and not given back if the base scheduler stops it later.

    ``budget`` is in worker-seconds, the unit of ``cost`` (default: ``measured``, each probe's own seconds per
    token). ``base_score`` is the base model's score, which ``expected_gain`` counts gains from.

    ``shield_go``: a GO trial runs to its end, the base scheduler's stops (ASHA's loss-based rungs) no longer apply
    to it once the predictor has judged it: the training loss a rung compares says little about the fine-tuned
    score the predictor estimates. The base still prunes every trial before its probe, and sees every result.
    """

    def __init__(
        self,
        predictor: IntervalPredictor | None = None,
        *,
        policy: Policy | str = Policy.THRESHOLD,
        threshold: float | None = None,
        budget: float | None = None,
        k: int | None = None,
        base_score: float | None = None,
        level: float = 0.9,
        cost: CostModel | None = None,
        base: TrialScheduler | None = None,
        shield_go: bool = False,
    ) -> None:
        """``predictor``: an in-process predictor or a :class:`~tuneahead_ray.tune.ServePredictor`; None loads
        the default predictor of the embedded model. Raises ``ValueError`` naming every missing or bad argument."""
        errors = []
        try:
            policy = Policy(policy)
        except ValueError:
            errors.append(f"policy: {policy!r} is not one of {', '.join(p.value for p in Policy)}")
        else:
            if policy in THRESHOLD_POLICIES and threshold is None:
                errors.append(f"threshold: policy {policy.value!r} needs a success threshold")
            if policy is Policy.TOP_K and (k is None or k < 0):
                errors.append("k: policy 'top_k' needs k >= 0")
            if policy in BUDGETED_POLICIES and (budget is None or budget < 0):
                errors.append(f"budget: policy {policy.value!r} needs a budget >= 0 (worker-seconds)")
            if policy is Policy.EXPECTED_GAIN and base_score is None:
                errors.append("base_score: policy 'expected_gain' needs the base model's score")
        if not 0 < level < 1:
            errors.append(f"level: {level} must be in (0, 1)")
        if predictor is not None and not isinstance(predictor, IntervalPredictor):
            errors.append(f"predictor: {type(predictor).__name__} has no predict_interval(table)")
        if errors:
            raise ValueError("TuneAheadScheduler: " + "; ".join(errors))
        super().__init__()
        self.predictor = predictor if predictor is not None else default_predictor()
        self.policy, self.threshold, self.budget, self.k = policy, threshold, budget, k
        self.base_score, self.level = base_score, level
        self.cost = cost or CostModel(kind="measured")
        self.base = base or FIFOScheduler()
        self.shield_go = shield_go
        #: The prediction and decision of every trial that reported its features, by trial id.
        self.predictions: dict[str, TrialPrediction] = {}
        self.committed_s, self.go_count = 0.0, 0  # budget committed to and number of GO trials
        self._seen: list[tuple[float, float, float, float]] = []  # predicted, lower, upper, cost of each probe

    # ------------------------------------------------------------------------------------------ decision

    def _go_cost(self, row: pd.DataFrame) -> float:
        """Worker-seconds of the rest of the run after its probe, as ``screen`` estimates it."""
        return float(run_costs(row, self.cost)[2][0])

    def _decide(self, features: Mapping[str, Any], continuing: bool) -> TrialPrediction:
        """Predict one trial from its meta-feature row and decide under the online rule; ``continuing``: whether
        the base scheduler lets the trial go on (a GO commits budget and a top-k place only then)."""
        row = pd.DataFrame([dict(features)])
        lower, upper = (float(end[0]) for end in self.predictor.predict_interval(row))
        predicted = (lower + upper) / 2
        cost = self._go_cost(row) if self.policy in BUDGETED_POLICIES else 0.0
        diverged = bool(features.get("probe_diverged", 0) == 1)
        if diverged:
            return TrialPrediction(predicted, lower, upper, False, math.nan, cost, "the probe diverged")
        self._seen.append((predicted, lower, upper, cost))
        seen = np.array(self._seen)
        selection = select(
            seen[:, 0], seen[:, 3], policy=self.policy, threshold=self.threshold,
            base_score=self.base_score if self.base_score is not None else 0.0, budget=self.budget, k=self.k,
            lower=seen[:, 1], upper=seen[:, 2], level=self.level,
        )  # fmt: skip
        go, value = bool(selection.go[-1]), float(selection.value[-1])
        reason = f"GO under {self.policy.value}: predicted {predicted:.1f} [{lower:.1f}, {upper:.1f}]"
        if self.policy is Policy.THRESHOLD and not go:
            reason = f"predicted {predicted:.1f} < threshold {self.threshold:g}"
        elif self.policy is Policy.TOP_K:
            if not go:
                reason = f"not among the top {self.k} predictions seen so far"
            elif self.go_count >= self.k:
                go, reason = False, f"the {self.k} GO places are taken"
        elif self.policy in BUDGETED_POLICIES:
            if not go:
                reason = "less value per unit of compute than the predictions seen so far"
            elif self.committed_s + cost > self.budget:
                go, reason = False, f"its {cost:.0f} s do not fit in the budget left"
        if go and not continuing:
            go, reason = False, "stopped by the base scheduler on the same result"
        if go:
            self.committed_s += cost
            self.go_count += 1
        return TrialPrediction(predicted, lower, upper, go, value, cost, reason)

    # ------------------------------------------------------------------------------------------ Tune callbacks

    @property
    def metric(self) -> str | None:
        return self.base.metric

    @property
    def supports_buffered_results(self) -> bool:
        return self.base.supports_buffered_results

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return self.base.set_search_properties(metric, mode, **spec)

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        self.base.on_trial_add(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        self.base.on_trial_error(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        """The base's decision, except STOP for a trial predicted NO-GO on the result carrying its features (and,
        with ``shield_go``, CONTINUE for a trial predicted GO).

        The base sees every result first, a NO-GO trial's included, so ASHA's rung cutoffs are those of all
        trials, as without this scheduler (on the held-out corpus, with ASHA seeing only the GO trials,
        ``benchmarks/tune_asha.py`` kept fewer successes at every budget)."""
        decision = self.base.on_trial_result(tune_controller, trial, result)
        prediction = self.predictions.get(trial.trial_id)
        if prediction is None:
            features = features_of(result)
            if features is None:
                return decision
            prediction = self._decide(features, continuing=self.shield_go or decision != TrialScheduler.STOP)
            self.predictions[trial.trial_id] = prediction
            if not prediction.go:
                return TrialScheduler.STOP
        if prediction.go and self.shield_go:
            return TrialScheduler.CONTINUE
        return decision

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict) -> None:
        self.base.on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        self.base.on_trial_remove(tune_controller, trial)

    def choose_trial_to_run(self, tune_controller: Any) -> Trial | None:
        return self.base.choose_trial_to_run(tune_controller)

    def debug_string(self) -> str:
        return (
            f"TuneAhead ({self.policy.value}): {len(self.predictions)} predicted, {self.go_count} GO, "
            f"{len(self.predictions) - self.go_count} stopped\n{self.base.debug_string()}"
        )

    def callback(self) -> PredictionCallback:
        """A Tune callback that writes each predicted trial's prediction and decision into its results, so the
        result table (``ResultGrid.get_dataframe()``) shows them beside the actual score."""
        return PredictionCallback(self)


class PredictionCallback(Callback):
    """Adds :meth:`TrialPrediction.columns` to every result of a trial the scheduler has predicted."""

    def __init__(self, scheduler: TuneAheadScheduler) -> None:
        self.scheduler = scheduler

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any) -> None:
        prediction = self.scheduler.predictions.get(trial.trial_id)
        if prediction is not None:
            result.update(prediction.columns())
