"""The Ray Tune scheduler without a cluster: each policy's online rule, argument checks, delegation to the base
scheduler (FIFO, a recording fake, Ray's real ASHA), the result columns and the HTTP predictor adapter."""

from __future__ import annotations

import json
import math
import pickle
import re
from types import SimpleNamespace

import httpx
import numpy as np
import pandas as pd
import pytest
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

from tuneahead_ray.screening._grid import CostModel
from tuneahead_ray.screening._policies import select, success_probability
from tuneahead_ray.tune import FEATURES_KEY, ServePredictor, TuneAheadScheduler, features_of

HALF_WIDTH = 2.0


class FakePredictor:
    """The interval is the row's ``p`` +- 2, so each test sets its trials' predictions directly."""

    def predict_interval(self, table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        p = table["p"].to_numpy(float)
        return p - HALF_WIDTH, p + HALF_WIDTH


class RecordingBase(FIFOScheduler):
    """A base scheduler that records every call and answers ``decision`` to each result."""

    def __init__(self, decision: str = TrialScheduler.CONTINUE) -> None:
        super().__init__()
        self.decision, self.calls = decision, []

    def on_trial_add(self, tune_controller, trial) -> None:
        self.calls.append(("add", trial.trial_id))

    def on_trial_error(self, tune_controller, trial) -> None:
        self.calls.append(("error", trial.trial_id))

    def on_trial_result(self, tune_controller, trial, result) -> str:
        self.calls.append(("result", trial.trial_id))
        return self.decision

    def on_trial_complete(self, tune_controller, trial, result) -> None:
        self.calls.append(("complete", trial.trial_id))

    def on_trial_remove(self, tune_controller, trial) -> None:
        self.calls.append(("remove", trial.trial_id))

    def choose_trial_to_run(self, tune_controller):
        self.calls.append(("choose", None))
        return "next-trial"

    def debug_string(self) -> str:
        return "recording base"


def row(p: float, total_steps: int = 100, diverged: float = 0.0) -> dict:
    """A feature row predicted ``p``; under ``COST`` its full run costs ``total_steps`` s, its probe 10 s."""
    return {
        "p": p,
        "probe_diverged": diverged,
        "hp_total_steps": float(total_steps),
        "hp_batch_size": 1.0,
        "total_tokens_mean": 10.0,
        "hp_max_seq_len": 64.0,
        "probe_steps": 10.0,
        "probe_seconds": 1.0,
    }


COST = CostModel(kind="tokens", tokens_per_second=10.0)


def trial(i: int) -> SimpleNamespace:
    return SimpleNamespace(trial_id=f"t{i}")


def feed(scheduler: TuneAheadScheduler, rows: list[dict], step: int = 10) -> list[str]:
    """Each row as the features result of a new trial; the scheduler's decisions."""
    decisions = []
    for i, features in enumerate(rows):
        scheduler.on_trial_add(None, trial(i))
        decisions.append(scheduler.on_trial_result(None, trial(i), {"step": step, FEATURES_KEY: features}))
    return decisions


STOP, CONTINUE = TrialScheduler.STOP, TrialScheduler.CONTINUE


def test_threshold_stops_exactly_the_trials_screen_would_reject() -> None:
    predicted = [55.0, 49.9, 50.0, 61.0, 30.0]
    scheduler = TuneAheadScheduler(FakePredictor(), threshold=50.0)
    decisions = feed(scheduler, [row(p) for p in predicted])
    screen = select(np.array(predicted), np.zeros(len(predicted)), policy="threshold", threshold=50.0).go
    assert [d == CONTINUE for d in decisions] == screen.tolist()
    assert [scheduler.predictions[f"t{i}"].go for i in range(len(predicted))] == screen.tolist()
    first = scheduler.predictions["t0"]
    assert (first.predicted, first.lower, first.upper) == (55.0, 55.0 - HALF_WIDTH, 55.0 + HALF_WIDTH)
    assert scheduler.predictions["t1"].reason == "predicted 49.9 < threshold 50"


def test_features_are_read_once_and_results_without_them_are_the_base_decision() -> None:
    base = RecordingBase()
    scheduler = TuneAheadScheduler(FakePredictor(), threshold=50.0, base=base)
    assert scheduler.on_trial_result(None, trial(0), {"step": 1, "loss": 2.0}) == CONTINUE
    assert scheduler.predictions == {}
    assert scheduler.on_trial_result(None, trial(0), {"step": 10, FEATURES_KEY: row(60.0)}) == CONTINUE
    # A later result with other features does not revisit the decision.
    assert scheduler.on_trial_result(None, trial(0), {"step": 20, FEATURES_KEY: row(10.0)}) == CONTINUE
    assert scheduler.predictions["t0"].predicted == 60.0
    assert base.calls == [("result", "t0")] * 3


def test_a_diverged_probe_is_no_go_whatever_its_prediction() -> None:
    scheduler = TuneAheadScheduler(FakePredictor(), threshold=50.0)
    assert feed(scheduler, [row(90.0, diverged=1.0)]) == [STOP]
    assert scheduler.predictions["t0"].reason == "the probe diverged"


def test_top_k_never_exceeds_k_and_skips_trials_below_the_kth_best_seen() -> None:
    base = RecordingBase()
    scheduler = TuneAheadScheduler(FakePredictor(), policy="top_k", k=2, base=base)
    base.decision = STOP  # the base stops the first trial itself: it takes no place
    assert feed(scheduler, [row(60.0)]) == [STOP]
    base.decision = CONTINUE
    for i, p in enumerate([70.0, 50.0, 65.0, 80.0], start=1):
        scheduler.on_trial_result(None, trial(i), {FEATURES_KEY: row(p)})
    go = {key: prediction.go for key, prediction in scheduler.predictions.items()}
    assert go == {"t0": False, "t1": True, "t2": False, "t3": True, "t4": False}
    assert scheduler.predictions["t0"].reason == "stopped by the base scheduler on the same result"
    assert scheduler.predictions["t2"].reason == "not among the top 2 predictions seen so far"
    assert scheduler.predictions["t4"].reason == "the 2 GO places are taken"


def test_expected_gain_goes_while_the_gain_is_positive_and_the_budget_covers_the_rest_of_the_run() -> None:
    # Each run: 100 s in full, its probe 10 s, so a GO commits 90 s; 200 s hold two.
    scheduler = TuneAheadScheduler(FakePredictor(), policy="expected_gain", budget=200.0, base_score=45.0, cost=COST)
    decisions = feed(scheduler, [row(50.0), row(44.0), row(52.0), row(51.0)])
    assert decisions == [CONTINUE, STOP, CONTINUE, STOP]
    assert scheduler.committed_s == pytest.approx(180.0)
    assert [scheduler.predictions[f"t{i}"].value for i in range(4)] == pytest.approx([5.0, -1.0, 7.0, 6.0])
    assert scheduler.predictions["t1"].reason == "less value per unit of compute than the predictions seen so far"
    assert scheduler.predictions["t3"].reason == "its 90 s do not fit in the budget left"


def test_expected_gain_skips_a_long_run_worth_little_once_the_trials_seen_overflow_the_budget() -> None:
    # The second run costs 940 s after its probe for +1: less per second than the first's +5 for 90 s.
    scheduler = TuneAheadScheduler(FakePredictor(), policy="expected_gain", budget=1000.0, base_score=45.0, cost=COST)
    assert feed(scheduler, [row(50.0), row(46.0, total_steps=950)]) == [CONTINUE, STOP]
    assert scheduler.predictions["t1"].cost_s == pytest.approx(940.0)
    assert scheduler.predictions["t1"].reason == "less value per unit of compute than the predictions seen so far"


def test_success_probability_values_are_the_screening_ones_within_the_budget() -> None:
    scheduler = TuneAheadScheduler(
        FakePredictor(), policy="success_probability", threshold=50.0, budget=180.0, cost=COST
    )
    predicted = [55.0, 51.0, 58.0]
    decisions = feed(scheduler, [row(p) for p in predicted])
    expected = success_probability(
        np.array(predicted), np.array(predicted) - HALF_WIDTH, np.array(predicted) + HALF_WIDTH, 50.0
    )
    assert [scheduler.predictions[f"t{i}"].value for i in range(3)] == pytest.approx(expected.tolist())
    assert decisions == [CONTINUE, CONTINUE, STOP]  # the third's 90 s no longer fit
    assert scheduler.committed_s <= 180.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "threshold: policy 'threshold' needs a success threshold"),
        ({"policy": "top_k"}, "k: policy 'top_k' needs k >= 0"),
        ({"policy": "top_k", "k": -1}, "k: policy 'top_k' needs k >= 0"),
        ({"policy": "expected_gain", "base_score": 45.0}, "budget: policy 'expected_gain' needs a budget >= 0"),
        ({"policy": "expected_gain", "budget": 10.0}, "base_score: policy 'expected_gain' needs the base model's"),
        ({"policy": "success_probability", "budget": 10.0}, "threshold: policy 'success_probability' needs"),
        ({"policy": "success_probability", "threshold": 50.0}, "budget: policy 'success_probability' needs"),
        ({"policy": "fastest", "threshold": 50.0}, "policy: 'fastest' is not one of threshold, top_k"),
        ({"threshold": 50.0, "level": 1.0}, "level: 1.0 must be in (0, 1)"),
    ],
)
def test_arguments_a_policy_needs_are_checked_by_name(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=r"^TuneAheadScheduler: .*" + re.escape(message)):
        TuneAheadScheduler(FakePredictor(), **kwargs)


def test_every_problem_is_named_at_once_and_a_predictor_needs_predict_interval() -> None:
    with pytest.raises(ValueError) as error:
        TuneAheadScheduler(object(), policy="expected_gain")  # type: ignore[arg-type]
    assert str(error.value).count("; ") == 2
    assert "predictor: object has no predict_interval(table)" in str(error.value)


def test_every_callback_is_delegated_to_the_base() -> None:
    base = RecordingBase()
    scheduler = TuneAheadScheduler(FakePredictor(), threshold=50.0, base=base)
    t = trial(0)
    scheduler.on_trial_add("controller", t)
    scheduler.on_trial_result("controller", t, {"loss": 1.0})
    scheduler.on_trial_error("controller", t)
    scheduler.on_trial_complete("controller", t, {})
    scheduler.on_trial_remove("controller", t)
    assert scheduler.choose_trial_to_run("controller") == "next-trial"
    assert [name for name, _ in base.calls] == ["add", "result", "error", "complete", "remove", "choose"]
    assert scheduler.debug_string().endswith("recording base")
    assert scheduler.set_search_properties("loss", "min") and scheduler.metric == base.metric == "loss"


def test_a_base_stop_stays_a_stop_even_for_a_go_prediction_and_commits_nothing() -> None:
    scheduler = TuneAheadScheduler(
        FakePredictor(), policy="expected_gain", budget=500.0, base_score=45.0, cost=COST, base=RecordingBase(STOP)
    )
    assert feed(scheduler, [row(60.0)]) == [STOP]
    assert scheduler.committed_s == 0.0 and not scheduler.predictions["t0"].go


def test_shield_go_keeps_go_trials_running_through_base_stops_and_still_stops_no_go() -> None:
    base = RecordingBase(STOP)
    scheduler = TuneAheadScheduler(FakePredictor(), threshold=50.0, base=base, shield_go=True)
    assert feed(scheduler, [row(60.0), row(40.0)]) == [CONTINUE, STOP]
    later = scheduler.on_trial_result(None, trial(0), {"step": 20, "loss": 1.0})
    assert later == CONTINUE and base.calls.count(("result", "t0")) == 2  # the base still saw every result
    before_probe = TuneAheadScheduler(FakePredictor(), threshold=50.0, base=RecordingBase(STOP), shield_go=True)
    before_probe.on_trial_add(None, trial(5))
    assert before_probe.on_trial_result(None, trial(5), {"step": 1, "loss": 1.0}) == STOP  # not judged yet


def test_under_asha_no_go_probes_count_in_its_cutoffs_and_go_trials_can_still_be_stopped_later() -> None:
    np.random.seed(0)
    asha = AsyncHyperBandScheduler(
        time_attr="step", metric="loss", mode="min", grace_period=10, reduction_factor=2, max_t=100, brackets=1
    )
    scheduler = TuneAheadScheduler(FakePredictor(), threshold=50.0, base=asha)
    trials = [trial(i) for i in range(3)]
    for t in trials:
        scheduler.on_trial_add(None, t)
    # The probes end at ASHA's first rung (step 10). ASHA sees every probe, the NO-GO one included, so its
    # cutoff there is that of all trials, as without the predictor: t2's 2.0 passes beside t0's 1.0 and
    # t1's 3.0 (against the GO trials alone, t0's 1.0, it would be stopped).
    probes = [{"step": 10, "loss": loss, FEATURES_KEY: row(p)} for p, loss in ((60.0, 1.0), (40.0, 3.0), (55.0, 2.0))]
    assert [scheduler.on_trial_result(None, t, r) for t, r in zip(trials, probes, strict=True)] == [
        CONTINUE,
        STOP,  # NO-GO by prediction
        CONTINUE,
    ]
    scheduler.on_trial_complete(None, trials[1], probes[1])  # Tune completes a stopped trial: ASHA forgets it
    assert "t1" not in asha._trial_info
    assert dict(asha._brackets[0]._rungs[-1][1]) == {"t0": -1.0, "t1": -3.0, "t2": -2.0}
    # At ASHA's next rung the GO trial with the worse loss is stopped by ASHA, as without the predictor.
    assert scheduler.on_trial_result(None, trials[0], {"step": 20, "loss": 1.0}) == CONTINUE
    assert scheduler.on_trial_result(None, trials[2], {"step": 20, "loss": 3.0}) == STOP
    assert scheduler.predictions["t2"].go
    assert scheduler.debug_string().startswith(
        "TuneAhead (threshold): 3 predicted, 2 GO, 1 stopped\nUsing AsyncHyperBand"
    )


def test_features_arrive_nested_or_flattened_by_tune() -> None:
    assert features_of({FEATURES_KEY: {"a": 1.0}}) == {"a": 1.0}
    assert features_of({f"{FEATURES_KEY}/a": 1.0, f"{FEATURES_KEY}/b": "x", "loss": 2.0}) == {"a": 1.0, "b": "x"}
    assert features_of({"loss": 2.0}) is None


def test_the_callback_writes_the_prediction_into_the_trial_results() -> None:
    scheduler = TuneAheadScheduler(FakePredictor(), threshold=50.0)
    feed(scheduler, [row(40.0)])
    callback = scheduler.callback()
    result = {"loss": 1.0}
    callback.on_trial_result(iteration=1, trials=[], trial=trial(0), result=result)
    assert result == {
        "loss": 1.0,
        "tuneahead_predicted": 40.0,
        "tuneahead_lower": 38.0,
        "tuneahead_upper": 42.0,
        "tuneahead_decision": "NO-GO",
    }
    untouched = {"loss": 1.0}
    callback.on_trial_result(iteration=1, trials=[], trial=trial(9), result=untouched)
    assert untouched == {"loss": 1.0}


def test_the_scheduler_pickles_with_its_predictions() -> None:
    scheduler = TuneAheadScheduler(
        FakePredictor(), threshold=50.0, base=AsyncHyperBandScheduler(metric="loss", mode="min")
    )
    feed(scheduler, [row(60.0)])
    copy = pickle.loads(pickle.dumps(scheduler))
    assert copy.predictions == scheduler.predictions and copy.metric == "loss"


def test_serve_predictor_sends_the_served_features_and_reads_unbounded_ends_as_infinite() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/v1/model":
            return httpx.Response(200, json={"model": {}, "card": {"features": ["a", "b"]}})
        answers = [
            {"prediction": 51.0, "lower": 49.0, "upper": 53.0},
            {"prediction": 40.0, "lower": None, "upper": None},
        ]
        return httpx.Response(200, json={"predictions": answers})

    predictor = ServePredictor("http://svc", token="tok", transport=httpx.MockTransport(handle))
    table = pd.DataFrame([{"a": 1.0, "b": math.nan, "extra": "x"}, {"a": True, "b": 2, "extra": "y"}])
    lower, upper = predictor.predict_interval(table)
    assert lower.tolist() == [49.0, -math.inf] and upper.tolist() == [53.0, math.inf]
    assert [(r.method, r.url.path) for r in seen] == [("GET", "/v1/model"), ("POST", "/v1/predict")]
    assert json.loads(seen[1].content) == {"rows": [{"a": 1.0, "b": None}, {"a": 1.0, "b": 2.0}]}
    assert seen[1].headers["authorization"] == "Bearer tok"
    predictor.predict_interval(table)
    assert [r.url.path for r in seen[2:]] == ["/v1/predict"]  # the feature list is read once
    with pytest.raises(ValueError, match="lack the served model's feature"):
        predictor.predict_interval(table.drop(columns="b"))
    scheduler = TuneAheadScheduler(ServePredictor("http://127.0.0.1:8000"), threshold=50.0)
    assert pickle.loads(pickle.dumps(scheduler)).predictor.base_url == "http://127.0.0.1:8000"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"report_every": 0}, "report_every: 0 must be >= 1"),
        ({"hp": {"lr": -1.0}}, "lr"),
        ({"probe": {"min_steps": 0}}, "min_steps"),
    ],
)
def test_the_trainable_rejects_bad_config_before_loading_a_model(tmp_path, config: dict, message: str) -> None:
    from tuneahead_ray.testbed import DataSpec, write_dataset
    from tuneahead_ray.tune import lora_trainable

    data = write_dataset(DataSpec(size=20, seed=1), tmp_path / "clean.jsonl")
    with pytest.raises(ValueError, match=message):
        lora_trainable({"dataset": str(data), **config})
