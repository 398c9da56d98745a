"""Active corpus building: each strategy picks what it should, falls back to random without a predictor, rejects
bad arguments; the estimated error and its plateau."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tuneahead_ray.corpus import Strategy, estimated_rmse, pick_batch, plateau
from tuneahead_ray.predictor import PredictorConfig, ScorePredictor


class FakePredictor:
    """Predicts column ``mu`` with the interval ``mu ± half``; the same methods as :class:`ScorePredictor`."""

    def __init__(self) -> None:
        self.config = PredictorConfig()
        self.metrics = {"calibration_rmse": 2.5}

    def predict(self, table: pd.DataFrame) -> np.ndarray:
        return table["mu"].to_numpy(float)

    def predict_interval(self, table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        mu, half = table["mu"].to_numpy(float), table["half"].to_numpy(float)
        return mu - half, mu + half


def _pool(mu, half) -> pd.DataFrame:
    return pd.DataFrame({"mu": np.asarray(mu, float), "half": np.asarray(half, float)})


def test_uncertainty_takes_the_widest_intervals() -> None:
    pool = _pool(np.zeros(8), [1, 9, 2, 8, 3, 7, 4, 0.5])
    picked = pick_batch("uncertainty", pool, FakePredictor(), 3, threshold=0.0, seed=0)
    assert sorted(picked.tolist()) == [1, 3, 5]


def test_decision_takes_the_runs_nearest_the_threshold_with_equal_widths() -> None:
    pool = _pool([40, 47.5, 60, 48.2, 30, 52, 47.9], np.full(7, 3.0))
    picked = pick_batch(Strategy.DECISION, pool, FakePredictor(), 3, threshold=48.0, seed=0)
    assert picked[:2].tolist() == [6, 3]  # nearest first
    assert picked[2] in (0, 1, 2, 4, 5)


def test_decision_fills_the_other_half_with_the_widest_of_the_rest() -> None:
    pool = _pool([48.1, 47.9, 40, 60, 30, 70], [1, 1, 2, 9, 3, 8])
    picked = pick_batch("decision", pool, FakePredictor(), 4, threshold=48.0, seed=0)
    assert sorted(picked[:2].tolist()) == [0, 1]
    assert picked[2:].tolist() == [3, 5]
    assert len(set(pick_batch("decision", pool, FakePredictor(), 6, threshold=48.0, seed=0).tolist())) == 6


def test_decision_reads_the_probability_not_the_distance() -> None:
    # 1pp above the threshold but certain (P ~ 1) vs 5pp above with a huge interval (P ~ 0.52): the second is
    # the less certain decision.
    pool = _pool([49.0, 53.0], [0.1, 300.0])
    picked = pick_batch("decision", pool, FakePredictor(), 1, threshold=48.0, seed=0)
    assert picked.tolist() == [1]


def test_random_ignores_the_predictor_and_depends_on_the_seed() -> None:
    pool = _pool(np.arange(50), np.arange(50))
    with_model = pick_batch("random", pool, FakePredictor(), 10, threshold=0.0, seed=3)
    without = pick_batch("random", pool, None, 10, threshold=0.0, seed=3)
    assert with_model.tolist() == without.tolist()
    assert len(set(with_model.tolist())) == 10
    assert pick_batch("random", pool, None, 10, threshold=0.0, seed=4).tolist() != with_model.tolist()


@pytest.mark.parametrize("strategy", list(Strategy))
def test_without_a_predictor_every_strategy_is_random(strategy) -> None:
    pool = _pool(np.arange(30), np.arange(30))
    expected = pick_batch("random", pool, None, 7, threshold=10.0, seed=11)
    assert pick_batch(strategy, pool, None, 7, threshold=10.0, seed=11).tolist() == expected.tolist()


@pytest.mark.parametrize("strategy", list(Strategy))
def test_picks_are_distinct_positions_and_at_most_the_pool(strategy) -> None:
    pool = _pool(np.ones(5), np.ones(5)).set_axis([10, 20, 30, 40, 50])  # labels are not positions
    picked = pick_batch(strategy, pool, FakePredictor(), 25, threshold=1.0, seed=0)
    assert sorted(picked.tolist()) == [0, 1, 2, 3, 4]
    assert pick_batch(strategy, pool.iloc[:0], FakePredictor(), 3, threshold=1.0, seed=0).tolist() == []


def test_ties_are_broken_by_the_seed_not_by_position() -> None:
    pool = _pool(np.zeros(40), np.ones(40))  # every width equal, e.g. the cv interval method
    picks = {tuple(pick_batch("uncertainty", pool, FakePredictor(), 5, threshold=0, seed=s)) for s in range(5)}
    assert len(picks) > 1
    assert (0, 1, 2, 3, 4) not in picks


@pytest.mark.parametrize("size", [0, -1, 1.5, True, "3"])
def test_size_must_be_a_positive_integer(size) -> None:
    with pytest.raises(ValueError, match="size"):
        pick_batch("random", _pool([1], [1]), None, size, threshold=0.0, seed=0)


def test_an_unknown_strategy_names_the_choices() -> None:
    with pytest.raises(ValueError, match="random, uncertainty, decision"):
        pick_batch("greedy", _pool([1], [1]), None, 1, threshold=0.0, seed=0)


def test_a_non_finite_threshold_is_rejected() -> None:
    with pytest.raises(ValueError, match="threshold"):
        pick_batch("decision", _pool([1], [1]), FakePredictor(), 1, threshold=float("nan"), seed=0)


@pytest.fixture(scope="module")
def fitted() -> tuple[ScorePredictor, pd.DataFrame]:
    """A real predictor of y = 10 x (noise growing with z) with per-run (cv-normalized) intervals; without novelty,
    which would widen the intervals of the pool's least usual quarter too (novel runs are uncertain as well)."""
    rng = np.random.default_rng(0)
    x, z = rng.uniform(0, 10, 400), rng.uniform(0, 1, 400)
    table = pd.DataFrame({"x": x, "z": z, "y": 10 * x + rng.normal(0, 0.5 + 20 * (z > 0.5), 400)})
    config = PredictorConfig(interval_method="cv-normalized", learning_rate=0.1, min_child_samples=5, novelty=False)
    return ScorePredictor(["x", "z"], config).fit(table, "y"), table


def test_a_real_predictor_decision_picks_runs_predicted_near_the_threshold(fitted) -> None:
    predictor, _ = fitted
    pool = pd.DataFrame({"x": np.linspace(0, 10, 101), "z": np.full(101, 0.2)})
    picked = pick_batch("decision", pool, predictor, 6, threshold=50.0, seed=0)
    assert np.all(np.abs(pool["x"].to_numpy()[picked[:3]] - 5.0) <= 1.0)


def test_a_real_predictor_uncertainty_picks_the_noisy_runs(fitted) -> None:
    predictor, _ = fitted
    rng = np.random.default_rng(1)
    pool = pd.DataFrame({"x": rng.uniform(0, 10, 100), "z": np.r_[np.full(90, 0.1), np.full(10, 0.9)]})
    picked = pick_batch("uncertainty", pool, predictor, 10, threshold=50.0, seed=0)
    assert (picked >= 90).mean() >= 0.8


def test_estimated_rmse_is_the_cross_fitted_error(fitted) -> None:
    predictor, _ = fitted
    assert estimated_rmse(predictor) == predictor.metrics["calibration_rmse"] > 0
    assert estimated_rmse(FakePredictor()) == 2.5
    with pytest.raises(ValueError, match="fit"):
        estimated_rmse(ScorePredictor(["x"]))


@pytest.mark.parametrize(
    ("runs", "errors", "expected"),
    [
        ([], [], None),
        ([25], [5.0], None),
        ([25, 50, 100, 200], [10, 8, 6, 4], None),  # every doubling pays
        ([25, 50, 75, 100], [10, 8, 7.9, 7.8], 3),  # 100 runs: 7.8 vs 8 at 50, under 5% better
        ([25, 50, 75, 100], [10, 9.8, 9, 8], 1),  # the first doubling already did not pay
        ([10, 25, 50, 75, 100, 150], [12, 10, 9.4, 9.2, 8.8, 8.5], None),  # 2% per batch, > 5% per doubling
        ([25, 50, 100], [10, 10.5, 9], 1),  # a worse estimate counts as no gain
    ],
)
def test_plateau(runs, errors, expected) -> None:
    assert plateau(runs, errors) == expected


def test_plateau_tolerance() -> None:
    runs, errors = [25, 50, 100, 200], [10, 9, 8.5, 8.2]
    assert plateau(runs, errors, tolerance=0.05) == 3  # 100 runs: 5.6% below 50's; 200 runs: 3.5% below 100's
    assert plateau(runs, errors, tolerance=0.01) is None
    assert plateau(runs, errors, tolerance=0.2) == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tolerance": -0.1},
        {"tolerance": 1.0},
        {"errors": [1, np.nan, 0.5]},
        {"runs": [10, 10, 20]},
        {"runs": [10, 20]},
        {"runs": [0, 10, 20]},
    ],
)
def test_plateau_rejects_bad_arguments(kwargs) -> None:
    with pytest.raises(ValueError):
        plateau(kwargs.pop("runs", [10, 20, 40]), kwargs.pop("errors", [3, 2, 1]), **kwargs)
