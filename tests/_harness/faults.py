"""Training faults injected into the adapted model: a NaN or inf loss, or an inf gradient, at a chosen step."""

from __future__ import annotations

import pytest

import tuneahead_ray.probe._worker as probe_worker


def inject_at(monkeypatch: pytest.MonkeyPatch, fault: str, step: int) -> None:
    """Make every adapted model's ``fault`` (``nan_loss``, ``inf_loss`` or ``inf_grad``) appear at its training
    step ``step`` (measurements run in eval mode and are not counted)."""
    attach = probe_worker.attach_adapter

    def attach_faulty(model, hp):
        adapted = attach(model, hp)
        steps = {"forward": 0}

        def corrupt_loss(module, args, kwargs, output):
            if not module.training:
                return output
            steps["forward"] += 1
            if steps["forward"] == step and fault in ("nan_loss", "inf_loss"):
                output.loss = output.loss * float("nan") if fault == "nan_loss" else output.loss + float("inf")
            if steps["forward"] == step and fault == "inf_grad":
                output.loss.register_hook(lambda grad: grad * float("inf"))
            return output

        handle = adapted.register_forward_hook(corrupt_loss, with_kwargs=True)
        original_detach = probe_worker.detach_adapter

        def detach(model):
            handle.remove()
            return original_detach(model)

        monkeypatch.setattr(probe_worker, "detach_adapter", detach)
        return adapted

    monkeypatch.setattr(probe_worker, "attach_adapter", attach_faulty)
