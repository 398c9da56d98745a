"""Trajectory features: the dynamic half of a candidate's meta-feature vector, computed from a probe's record."""

from __future__ import annotations

import math

import numpy as np

from tuneahead_ray.features import PROBE_FEATURES
from tuneahead_ray.probe._probe import ProbeTrace
from tuneahead_ray.probe._reference import ReferenceScore
from tuneahead_ray.probe._spec import ProbeSpec

__all__ = ["trajectory_features"]


_EDGE = 3  # steps averaged for the initial and the final loss


def _mean(values: list[float] | np.ndarray) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _log_loss_slope(losses: np.ndarray) -> float:
    """Slope of a least-squares line through log(loss) over the step index (negative = learning)."""
    positive = losses[np.isfinite(losses) & (losses > 0)]
    if len(positive) < 2:
        return float("nan")
    return float(np.polyfit(np.arange(len(positive)), np.log(positive), 1)[0])


def _diverged(losses: np.ndarray, grad_norms: list[float], heldout_after: float, spec: ProbeSpec) -> bool:
    """NaN/inf anywhere, or the loss ending far above the first step's loss (a blow-up)."""
    if len(losses) == 0 or not np.all(np.isfinite(losses)) or not math.isfinite(heldout_after):
        return True
    if not all(math.isfinite(g) for g in grad_norms):
        return True
    return float(np.mean(losses[-_EDGE:])) > spec.blowup_factor * max(float(losses[0]), 1e-6)


def _reference_features(trace: ProbeTrace) -> dict[str, float]:
    """The reference set before and after the probe, and how its change compares with the candidate's own rows.

    - ``probe_ref_loss_*`` / ``probe_ref_match_*``: answer-token loss / greedy exact-match share on the reference
      set before, after, and after minus before (does the probe move the model toward the target task?).
    - ``probe_ref_token_acc_delta``: change of the share of answer tokens the model predicts (finer than exact
      match on a small set).
    - ``probe_ref_transfer``: reference loss change minus own held-out loss change: near 0 when learning the data
      is learning the task, positive when the probe learns something the task does not reward (noise, drift).
    - ``probe_own_ref_gap``: own held-out loss minus reference loss after the probe: high when the candidate's
      answers stay hard to predict although the task is learned (mislabeled or corrupted rows).
    """
    before, after = trace.reference_before, trace.reference_after
    if before is None or after is None:
        return {name: float("nan") for name in PROBE_FEATURES if "_ref_" in name}
    nan_after = ReferenceScore(float("nan"), float("nan"), float("nan"))
    after = after if math.isfinite(after.loss) else nan_after
    return {
        "probe_ref_loss_before": before.loss,
        "probe_ref_loss_after": after.loss,
        "probe_ref_loss_delta": after.loss - before.loss,
        "probe_ref_match_before": before.exact_match,
        "probe_ref_match_after": after.exact_match,
        "probe_ref_match_delta": after.exact_match - before.exact_match,
        "probe_ref_token_acc_delta": after.token_accuracy - before.token_accuracy,
        "probe_ref_transfer": (after.loss - before.loss) - (trace.heldout_after - trace.heldout_before),
        "probe_own_ref_gap": trace.heldout_after - after.loss,
    }


def trajectory_features(trace: ProbeTrace, spec: ProbeSpec) -> dict[str, float]:
    """All of ``PROBE_FEATURES`` for one probe; NaN where the probe died before a quantity existed."""
    losses = np.asarray(trace.losses, dtype=float)
    grads = np.asarray([g for g in trace.grad_norms if math.isfinite(g)], dtype=float)
    initial = _mean(losses[:_EDGE])
    # A probe stopped at a NaN/inf loss or gradient never reached a final loss (nor a decay ratio).
    stopped = len(losses) > 0 and not (
        math.isfinite(losses[-1]) and all(math.isfinite(g) for g in trace.grad_norms[-1:])
    )
    final = float("nan") if stopped else _mean(losses[-_EDGE:])
    return {
        "probe_initial_loss": initial,
        "probe_final_loss": final,
        "probe_loss_slope": _log_loss_slope(losses),
        "probe_decay_ratio": final / initial if initial > 0 else float("nan"),
        "probe_loss_var": float(np.var(losses[np.isfinite(losses)])) if np.isfinite(losses).any() else float("nan"),
        "probe_grad_norm_mean": float(grads.mean()) if len(grads) else float("nan"),
        "probe_grad_norm_var": float(grads.var()) if len(grads) else float("nan"),
        "probe_grad_norm_max": float(grads.max()) if len(grads) else float("nan"),
        "probe_grad_consistency": _mean(trace.consistency),
        "probe_grad_sparsity": _mean(trace.sparsity),
        "probe_param_change": trace.param_change[-1] if trace.param_change else float("nan"),
        "probe_flatness": _mean(trace.flatness),
        "probe_heldout_before": trace.heldout_before,
        "probe_heldout_after": trace.heldout_after,
        "probe_heldout_delta": trace.heldout_after - trace.heldout_before,
        "probe_lr_mean": _mean(trace.lrs),
        "probe_diverged": float(_diverged(losses, trace.grad_norms, trace.heldout_after, spec)),
        **_reference_features(trace),
    }
