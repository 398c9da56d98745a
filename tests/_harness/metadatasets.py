"""Synthetic metadatasets and corpora for predictor tests: fast, seeded, with every corpus feature."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tuneahead_ray.features import FEATURE_GROUPS
from tuneahead_ray.predictor import PredictorConfig

#: Small, fast LightGBM settings for tests: one thread, a higher learning rate, fewer rounds.
FAST = PredictorConfig(learning_rate=0.1, max_rounds=400, early_stopping_rounds=30, n_jobs=1)
FAMILIES = ("add", "count", "compare", "color", "home", "code")


def synthetic_metadataset(n: int, seed: int = 0) -> pd.DataFrame:
    """``x1, x2, noise, y`` with y = 50 + 5·x1 + 3·sin(2·x2) + N(0, 1): ``noise`` carries no signal."""
    rng = np.random.default_rng(seed)
    x1, x2, noise = rng.uniform(-2, 2, n), rng.uniform(-2, 2, n), rng.normal(size=n)
    y = 50 + 5 * x1 + 3 * np.sin(2 * x2) + rng.normal(0, 1.0, n)
    return pd.DataFrame({"x1": x1, "x2": x2, "noise": noise, "y": y})


def _loss_curve(rng: np.random.Generator, asymptote: float, steps: int) -> list[float]:
    t = np.arange(1, steps + 1)
    return (1.5 * t ** -rng.uniform(0.3, 0.7) + asymptote + rng.normal(0, 0.02, steps)).tolist()


def synthetic_corpus(n: int, seed: int = 0) -> pd.DataFrame:
    """A corpus-shaped table: every feature column, knobs, costs, curves and both proxies' scores.

    The score falls with ``near_duplicate_rate`` and ``probe_heldout_delta`` and peaks at lr 1e-3; the loss
    curve's asymptote and the proxy score follow the score with noise; every other feature is noise.
    """
    rng = np.random.default_rng(seed)
    groups = FEATURE_GROUPS
    table = {name: rng.normal(size=n) for group in groups.values() for name in group}
    duplicates, delta = rng.uniform(0, 0.6, n), rng.uniform(-0.5, 0.1, n)
    log_lr = rng.uniform(-4.5, -1.0, n)
    table.update(near_duplicate_rate=duplicates, probe_heldout_delta=delta, hp_log10_lr=log_lr)
    score = 46 - 12 * duplicates - 10 * delta - 1.5 * (log_lr + 3) ** 2 + rng.normal(0, 0.5, n)
    probe_steps = np.full(n, 20)
    total_steps = rng.integers(100, 400, n)
    table.update(
        candidate_id=[f"run{i}" for i in range(n)],
        family_group=rng.choice(FAMILIES, n),
        data_label_noise=rng.uniform(0, 1, n),
        data_size=rng.integers(200, 4000, n).astype(float),
        score=score,
        base_score=np.full(n, 46.875),
        gain=score - 46.875,
        loss_curve=[_loss_curve(rng, 2.5 - 0.04 * (s - 40), int(k)) for s, k in zip(score, total_steps, strict=True)],
        probe_steps=probe_steps,
        total_steps=total_steps,
        probe_seconds=rng.uniform(0.5, 1.0, n),
        descriptor_seconds=rng.uniform(0.1, 0.2, n),
        train_seconds=total_steps * 0.05,
        eval_seconds=np.full(n, 2.0),
        proxy_score=38 + 0.5 * (score - 46) + rng.normal(0, 1.0, n),
        proxy_base_score=np.full(n, 38.75),
        proxy_seconds=rng.uniform(1.0, 2.0, n),
        strong_proxy_score=42 + 0.8 * (score - 46) + rng.normal(0, 0.5, n),
        strong_proxy_base_score=np.full(n, 42.5),
        strong_proxy_seconds=rng.uniform(1.5, 2.5, n),
        dataset_probe_seconds=rng.uniform(0.5, 1.0, n),
        diverged=np.zeros(n, dtype=bool),
    )
    return pd.DataFrame(table)
