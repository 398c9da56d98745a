"""A Ray Tune function trainable: one LoRA run whose first K steps are the probe, then the same trainer to the end.

It reports, in order: the probe's meta-feature row (under :data:`~tuneahead_ray.tune.FEATURES_KEY`, at step K,
where :class:`~tuneahead_ray.tune.TuneAheadScheduler` decides), the training loss every ``report_every`` steps,
and at the last step the benchmark ``score`` (with ``base_score``). ``step`` is the time attribute throughout.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ray import tune

from tuneahead_ray._private.cache import cache_root
from tuneahead_ray.descriptors import read_cached, write_cached
from tuneahead_ray.descriptors.pipeline import compute_descriptors
from tuneahead_ray.evaluation import Benchmark
from tuneahead_ray.features import DATASET_PROBE_FEATURES, DESCRIPTOR_SAMPLE_SIZE
from tuneahead_ray.features.compute import feature_row
from tuneahead_ray.probe import DatasetProbeSpec, ProbeResult, ProbeSpec, RunWorker
from tuneahead_ray.schemas import Candidate, DatasetRef, HyperParams, content_hash
from tuneahead_ray.training import StepRecord
from tuneahead_ray.tune._scheduler import FEATURES_KEY

__all__ = ["lora_trainable"]


def _static(candidate: Candidate, device: str, cache_dir: Path) -> dict[str, float]:
    """The dataset's static descriptors as the corpus and ``screen`` compute them, in process, cached by content
    (trials on the same dataset compute them once)."""
    return compute_descriptors(
        candidate.dataset,
        candidate.model,
        use_ray=False,
        sample_size=DESCRIPTOR_SAMPLE_SIZE,
        device=device,
        cache_dir=cache_dir,
    )


def _dataset_probe(
    worker: RunWorker, candidate: Candidate, fingerprint: str, spec: ProbeSpec, dataset_spec: DatasetProbeSpec,
    cache_dir: Path,
) -> dict[str, float]:  # fmt: skip
    """The dataset's standardized probe features, cached on disk like the descriptors, by model, content and protocol
    (trials on the same dataset share one)."""
    key = content_hash(
        {"model": candidate.model, "dataset": fingerprint, "probe": spec.model_dump(mode="json"),
         "dataset_probe": dataset_spec.model_dump(mode="json")}
    )  # fmt: skip
    cached = read_cached(cache_dir, f"dataset-probe-{key}", DATASET_PROBE_FEATURES)
    if cached is not None:
        return cached
    features = worker.dataset_probe(candidate.dataset, spec, dataset_spec).features
    write_cached(cache_dir, f"dataset-probe-{key}", features)
    return features


def lora_trainable(config: dict[str, Any]) -> None:
    """Train one candidate and report to Tune (see the module docstring). ``config`` keys:

    * ``dataset`` (required): the training file, an absolute path (trials run in their own directories);
    * ``hp``: :class:`~tuneahead_ray.schemas.HyperParams` fields;
    * ``model``: base model directory or ``"default"`` (the embedded model, the default);
    * ``probe``: :class:`~tuneahead_ray.probe.ProbeSpec` fields (the default probe, as the corpus);
    * ``benchmark``: a ``benchmark:`` block (default: the model's own, the testbed's for the embedded model);
    * ``report_every`` (10): steps between loss reports after the probe; ``device`` (``"auto"``);
    * ``dataset_probe``: :class:`~tuneahead_ray.probe.DatasetProbeSpec` fields (the default: the corpus's
      protocol), run once per dataset and cached beside the descriptors;
    * ``descriptor_cache``: where descriptors are cached (default ``$TUNEAHEAD_CACHE/descriptors``).
    """
    candidate = Candidate(
        model=config.get("model", "default"),
        dataset=DatasetRef(path=config["dataset"]),
        hp=HyperParams(**config.get("hp", {})),
    )
    spec = ProbeSpec(**config.get("probe", {}))
    benchmark = Benchmark.model_validate(config["benchmark"]).root if config.get("benchmark") else None
    every = int(config.get("report_every", 10))
    if every < 1:
        raise ValueError(f"report_every: {every} must be >= 1")
    device = config.get("device", "auto")
    dataset_spec = DatasetProbeSpec.model_validate(config.get("dataset_probe", {}))
    cache_dir = Path(config.get("descriptor_cache", cache_root() / "descriptors"))
    static = _static(candidate, device, cache_dir)
    worker = RunWorker(candidate.model, device)
    fingerprint = candidate.dataset.fingerprint()
    static = {**static, **_dataset_probe(worker, candidate, fingerprint, spec, dataset_spec, cache_dir)}
    total_steps = 0

    def on_probe(probe: ProbeResult, losses: list[float]) -> None:
        nonlocal total_steps
        total_steps = probe.total_steps
        row = feature_row(candidate, fingerprint, static, probe)
        tune.report({"step": probe.probe_steps, "loss": losses[-1] if losses else math.nan, FEATURES_KEY: row})

    def on_step(record: StepRecord) -> None:
        if record.step % every == 0 and record.step < total_steps:
            tune.report({"step": record.step, "loss": record.loss})

    _, run = worker.probe_and_run(candidate, spec, benchmark, on_probe=on_probe, on_step=on_step)
    tune.report(
        {
            "step": run.steps,
            "loss": run.loss_curve[-1] if run.loss_curve else math.nan,
            "score": run.score,
            "base_score": run.base_score,
            "diverged": run.diverged,
        }
    )
