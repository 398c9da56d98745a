"""Go/no-go policies on hand-made candidates with known best choices."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tuneahead_ray.screening._policies import Policy, select, success_probability


def test_threshold_policy_is_the_papers_rule() -> None:
    chosen = select(np.array([40.0, 55.0, 60.0]), np.ones(3), policy="threshold", threshold=55.0)
    assert chosen.go.tolist() == [False, True, True]
    assert chosen.cost_used == 2.0


def test_top_k_takes_the_best_predictions() -> None:
    chosen = select(np.array([10.0, 90.0, 50.0, 70.0]), np.ones(4), policy=Policy.TOP_K, k=2)
    assert np.flatnonzero(chosen.go).tolist() == [1, 3]


def test_expected_gain_respects_the_budget_and_prefers_gain_per_cost() -> None:
    predicted = np.array([60.0, 58.0, 70.0, 45.0])  # base 50: gains 10, 8, 20, -5
    cost = np.array([1.0, 1.0, 4.0, 0.1])
    chosen = select(predicted, cost, policy="expected_gain", base_score=50.0, budget=2.0)
    assert chosen.go.tolist() == [True, True, False, False]  # 18 pp for 2 units beats nothing else affordable
    assert chosen.cost_used <= 2.0


def test_greedy_knapsack_keeps_its_guarantee_against_brute_force() -> None:
    rng = np.random.default_rng(0)
    for _ in range(30):
        predicted = rng.normal(55, 10, 10)
        cost = rng.uniform(0.5, 3.0, 10)
        budget = float(rng.uniform(2, 10))
        chosen = select(predicted, cost, policy="expected_gain", base_score=50.0, budget=budget)
        gain = np.maximum(predicted - 50.0, 0)
        best = max(
            gain[list(s)].sum()
            for r in range(11)
            for s in itertools.combinations(range(10), r)
            if cost[list(s)].sum() <= budget
        )
        assert chosen.cost_used <= budget + 1e-9
        assert gain[chosen.go].sum() >= 0.5 * best - 1e-9


def test_greedy_knapsack_is_near_optimal_when_runs_are_small_next_to_the_budget() -> None:
    rng = np.random.default_rng(1)
    predicted, cost = rng.normal(55, 10, 2000), rng.uniform(0.5, 3.0, 2000)
    budget = 0.2 * cost.sum()
    chosen = select(predicted, cost, policy="expected_gain", base_score=50.0, budget=budget)
    gain = np.maximum(predicted - 50.0, 0)
    # The fractional (LP) optimum bounds the integer optimum from above.
    order = np.argsort(-gain / cost)
    spend = np.cumsum(cost[order])
    whole = spend <= budget
    bound = gain[order][whole].sum() + gain[order][~whole][0] * (budget - spend[whole][-1]) / cost[order][~whole][0]
    assert gain[chosen.go].sum() >= 0.99 * bound


def test_success_probability_reads_the_interval_as_a_normal() -> None:
    p = success_probability(np.array([60.0]), np.array([50.0]), np.array([70.0]), threshold=60.0)
    assert p[0] == pytest.approx(0.5)
    sure = success_probability(np.array([80.0]), np.array([78.0]), np.array([82.0]), threshold=60.0)
    assert sure[0] > 0.999


def test_success_probability_policy_prefers_the_confident_candidate() -> None:
    predicted = np.array([62.0, 62.0])
    chosen = select(
        predicted,
        np.ones(2),
        policy="success_probability",
        threshold=60.0,
        budget=1.0,
        lower=np.array([61.0, 40.0]),
        upper=np.array([63.0, 84.0]),
    )
    assert chosen.go.tolist() == [True, False]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"policy": "threshold"}, "threshold"),
        ({"policy": "top_k"}, "k >= 0"),
        ({"policy": "expected_gain"}, "budget"),
        ({"policy": "success_probability", "budget": 1.0}, "intervals"),
        ({"policy": "nonsense"}, "nonsense"),
    ],
)
def test_policies_reject_missing_parameters(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        select(np.array([50.0]), np.array([1.0]), **kwargs)


def test_negative_cost_is_rejected() -> None:
    with pytest.raises(ValueError, match="cost"):
        select(np.array([50.0]), np.array([-1.0]), policy="threshold", threshold=1.0)
