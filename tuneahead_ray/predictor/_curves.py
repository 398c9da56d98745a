"""Loss-curve extrapolation for the early-stop baseline: a power law L(t) = a·t^(-b) + c fitted to the probe."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit

__all__ = ["PowerLaw", "extrapolate_loss", "fit_power_law"]

_MIN_POINTS = 3


@dataclass(frozen=True)
class PowerLaw:
    """L(t) = a·t^(-b) + c over steps t = 1, 2, ...; ``c`` is the asymptote."""

    a: float
    b: float
    c: float

    def __call__(self, step: float | np.ndarray) -> float | np.ndarray:
        return self.a * np.power(step, -self.b) + self.c


def _power_law(step: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    return a * np.power(step, -b) + c


def _log_linear(steps: np.ndarray, losses: np.ndarray) -> PowerLaw:
    """The fallback: a straight line through (log t, log L), i.e. a power law with no offset."""
    slope, intercept = np.polyfit(np.log(steps), np.log(losses), 1)
    return PowerLaw(a=float(np.exp(intercept)), b=float(-slope), c=0.0)


def fit_power_law(losses: list[float] | np.ndarray) -> PowerLaw | None:
    """Least-squares power law through the finite, positive losses (step t = index + 1).

    Bounded fit (a, c >= 0; 0 <= b <= 3) with ``scipy.optimize.curve_fit``; a log-linear fit when it fails or
    comes out non-finite; ``None`` with fewer than three usable points (e.g. a probe that diverged at once).
    """
    losses = np.asarray(losses, dtype=float)
    steps = np.arange(1, len(losses) + 1, dtype=float)
    usable = np.isfinite(losses) & (losses > 0)
    steps, losses = steps[usable], losses[usable]
    if len(losses) < _MIN_POINTS:
        return None
    start = (max(losses[0] - losses.min(), 1e-3), 0.5, 0.9 * losses.min())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            (a, b, c), _ = curve_fit(
                _power_law, steps, losses, p0=start, bounds=([0.0, 0.0, 0.0], [np.inf, 3.0, np.inf]), maxfev=5000
            )
    except (RuntimeError, ValueError):
        return _log_linear(steps, losses)
    fitted = PowerLaw(a=float(a), b=float(b), c=float(c))
    return fitted if all(map(math.isfinite, (a, b, c))) else _log_linear(steps, losses)


def extrapolate_loss(probe_losses: list[float] | np.ndarray, total_steps: int) -> float:
    """The power law fitted to the probe's losses, evaluated at the run's last step (NaN when it cannot be fit)."""
    law = fit_power_law(probe_losses)
    return float(law(float(total_steps))) if law is not None else math.nan
