"""Meta-feature vectors of candidate runs: static descriptors + probe features + hyperparameters, one row each.

``compute_features`` runs the descriptors once per distinct dataset (Ray Data), the probes on the actor pool, and
appends every finished row to a checkpoint, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path

import pyarrow as pa

from tuneahead_ray.probe import ProbePool, ProbeResult, ProbeSpec
from tuneahead_ray.schemas import LORA_TARGET_MODULES, LR_SCHEDULES, Candidate, DatasetRef, HyperParams
from tuneahead_ray.store import ResultStore
from tuneahead_ray.workers import PoolConfig, WorkerFailure

__all__ = [
    "DESCRIPTOR_SAMPLE_SIZE",
    "FeatureProtocolError",
    "feature_protocol",
    "open_feature_store",
    "HP_FEATURES",
    "candidate_ids",
    "compute_features",
    "dataset_fingerprints",
    "feature_row",
    "hp_features",
    "lr_integral",
    "probe_features",
    "static_features",
]

HP_FEATURES: tuple[str, ...] = (
    "hp_log10_lr",
    "hp_lora_r",
    "hp_lora_alpha",
    "hp_lora_scale",
    "hp_lora_dropout",
    "hp_n_target_modules",
    "hp_targets_mlp",
    "hp_batch_size",
    "hp_total_steps",
    "hp_epochs_equiv",
    "hp_warmup_ratio",
    "hp_lr_schedule",
    "hp_weight_decay",
    "hp_max_seq_len",
    "hp_max_grad_norm",
    "hp_log10_lr_integral",
)
_MLP = {"gate_proj", "up_proj", "down_proj"}


def lr_integral(hp: HyperParams, total_steps: int) -> float:
    """The learning rate the run's schedule spends over all its steps (sum of the per-step lr, warmup included):
    lr, schedule shape, warmup and length in one number, exactly as the trainer's scheduler computes them."""
    import torch
    from transformers import get_scheduler

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=hp.lr)
    schedule = get_scheduler(
        hp.lr_schedule,
        optimizer,
        num_warmup_steps=round(hp.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )
    multiplier = schedule.lr_lambdas[0]
    return hp.lr * math.fsum(multiplier(step) for step in range(total_steps))


def hp_features(hp: HyperParams, num_examples: int) -> dict[str, float]:
    """Hyperparameters as numbers; the schedule is an integer code (a categorical feature)."""
    total = hp.total_steps(num_examples)
    return {
        "hp_log10_lr": math.log10(hp.lr),
        "hp_lora_r": float(hp.lora_r),
        "hp_lora_alpha": float(hp.lora_alpha),
        "hp_lora_scale": hp.lora_alpha / hp.lora_r,
        "hp_lora_dropout": hp.lora_dropout,
        "hp_n_target_modules": float(len(hp.target_modules)) / len(LORA_TARGET_MODULES),
        "hp_targets_mlp": float(bool(_MLP & set(hp.target_modules))),
        "hp_batch_size": float(hp.batch_size),
        "hp_total_steps": float(total),
        "hp_epochs_equiv": total * hp.batch_size / max(num_examples, 1),
        "hp_warmup_ratio": hp.warmup_ratio,
        "hp_lr_schedule": float(LR_SCHEDULES.index(hp.lr_schedule)),
        "hp_weight_decay": hp.weight_decay,
        "hp_max_seq_len": float(hp.max_seq_len),
        "hp_max_grad_norm": hp.max_grad_norm if hp.max_grad_norm is not None else float("nan"),  # NaN: no clipping
        "hp_log10_lr_integral": math.log10(max(lr_integral(hp, total), 1e-30)),
    }


def feature_row(candidate: Candidate, fingerprint: str, static: dict[str, float], probe: ProbeResult) -> dict:
    """One output row: identity, every feature, and what the probe cost."""
    return {
        "candidate_id": probe.candidate_id,
        "model": candidate.model,
        "dataset": str(candidate.dataset.path),
        "dataset_fingerprint": fingerprint,
        "hp": candidate.hp.model_dump_json(),
        **static,
        **probe.features,
        **hp_features(candidate.hp, probe.num_examples),
        "num_examples": probe.num_examples,
        "truncated_examples": probe.truncated_examples,
        "probe_steps": probe.probe_steps,
        "total_steps": probe.total_steps,
        "probe_tokens": probe.tokens,
        "probe_seconds": probe.probe_seconds,
        "probe_share": probe.probe_steps / probe.total_steps,
        "diverged": probe.diverged,
        "worker": probe.worker,
    }


#: Descriptor sample size of the model-based descriptors: the corpus was built with it, so screening uses it too.
DESCRIPTOR_SAMPLE_SIZE = 128

ProgressFn = Callable[[str, int, int], None]


def dataset_fingerprints(candidates: Iterable[Candidate]) -> dict[Path, str]:
    """Content hash of each distinct dataset file: a grid repeats the same few datasets across many candidates."""
    return {path: DatasetRef(path=path).fingerprint() for path in {c.dataset.path for c in candidates}}


def candidate_ids(candidates: Iterable[Candidate], fingerprints: dict[Path, str]) -> dict[str, Candidate]:
    """Candidates by content id (model, dataset content, hyperparameters)."""
    return {c.candidate_id(fingerprints[c.dataset.path]): c for c in candidates}


def static_features(
    candidates: Iterable[Candidate],
    fingerprints: dict[Path, str],
    *,
    model: str,
    cache_dir: str | Path | None = None,
    device: str = "auto",
    on_progress: ProgressFn | None = None,
) -> dict[str, dict[str, float]]:
    """Static descriptors per dataset fingerprint, one Ray Data pass per distinct dataset (cached)."""
    from tuneahead_ray.descriptors import compute_descriptors

    datasets = {fingerprints[c.dataset.path]: c.dataset for c in candidates}
    static: dict[str, dict[str, float]] = {}
    for done, (fingerprint, dataset) in enumerate(datasets.items(), start=1):
        static[fingerprint] = compute_descriptors(
            dataset, model, cache_dir=cache_dir, sample_size=DESCRIPTOR_SAMPLE_SIZE, device=device
        )
        if on_progress is not None:
            on_progress("descriptors", done, len(datasets))
    return static


def probe_features(
    todo: dict[str, Candidate],
    fingerprints: dict[Path, str],
    static: dict[str, dict[str, float]],
    store: ResultStore,
    *,
    model: str,
    spec: ProbeSpec,
    pool_config: PoolConfig | None = None,
    state_dirs: dict[str, str] | None = None,
    on_progress: ProgressFn | None = None,
) -> list[WorkerFailure]:
    """Probe every candidate of ``todo`` (by id) on the actor pool, appending each feature row to ``store``."""
    failures: list[WorkerFailure] = []
    if not todo:
        return failures
    pool = ProbePool(model, pool_config)
    try:
        for done, result in enumerate(pool.run(todo, spec, state_dirs), start=1):
            if isinstance(result, WorkerFailure):
                failures.append(result)
            else:
                candidate = todo[result.candidate_id]
                fingerprint = fingerprints[candidate.dataset.path]
                store.append(feature_row(candidate, fingerprint, static[fingerprint], result))
            if on_progress is not None:
                on_progress("probes", done, len(todo))
    finally:
        pool.shutdown()
    return failures


class FeatureProtocolError(ValueError):
    """A feature checkpoint computed under another protocol than the one asked for now."""


def feature_protocol(spec: ProbeSpec) -> dict:
    """What every stored feature row depends on besides its candidate: the probe spec and the descriptors' version
    and sample size. Rows computed under different protocols are not comparable."""
    from tuneahead_ray.descriptors import DESCRIPTORS_VERSION

    return {
        "probe": spec.model_dump(mode="json"),
        "descriptors_version": DESCRIPTORS_VERSION,
        "descriptor_sample_size": DESCRIPTOR_SAMPLE_SIZE,
    }


def _flat(protocol: dict) -> dict:
    return {
        f"{part}.{key}" if isinstance(value, dict) else part: inner
        for part, value in protocol.items()
        for key, inner in (value.items() if isinstance(value, dict) else [(None, value)])
    }


def open_feature_store(path: str | Path, spec: ProbeSpec) -> ResultStore:
    """The feature checkpoint at ``path`` for resuming, with its protocol recorded beside it.

    A checkpoint computed under another protocol (another probe spec, an older descriptor version), or one that does
    not say, is refused with an error naming the file: resuming it would mix rows that are not comparable.
    """
    store = ResultStore(path)
    protocol_path = store.parquet_path.with_name(store.parquet_path.name + ".protocol.json")
    protocol = feature_protocol(spec)
    remedy = f"delete {store.parquet_path} and {store.checkpoint_path} (or write elsewhere) to recompute"
    if protocol_path.exists():
        saved = json.loads(protocol_path.read_text(encoding="utf-8"))
        if saved != protocol:
            before, now = _flat(saved), _flat(protocol)
            changed = sorted(key for key in before.keys() | now.keys() if before.get(key) != now.get(key))
            raise FeatureProtocolError(
                f"{store.parquet_path}: its {len(store)} rows were computed with another feature protocol "
                f"(differs in {', '.join(changed)}); {remedy}"
            )
    elif len(store):
        raise FeatureProtocolError(
            f"{store.parquet_path}: its {len(store)} rows do not record their feature protocol "
            f"({protocol_path.name} is missing, written by an older version); {remedy}"
        )
    else:
        protocol_path.parent.mkdir(parents=True, exist_ok=True)
        protocol_path.write_text(json.dumps(protocol, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return store


def compute_features(
    candidates: list[Candidate],
    out_path: str | Path,
    *,
    model: str,
    spec: ProbeSpec,
    pool_config: PoolConfig | None = None,
    cache_dir: str | Path | None = None,
    on_progress: ProgressFn | None = None,
) -> tuple[pa.Table, list[WorkerFailure]]:
    """Feature rows for every candidate, resuming from ``out_path``'s checkpoint; Ray must be initialised.

    ``on_progress(stage, done, total)`` is called as descriptors and probes finish.
    """
    store = open_feature_store(out_path, spec)
    fingerprints = dataset_fingerprints(candidates)
    todo = {key: c for key, c in candidate_ids(candidates, fingerprints).items() if key not in store}
    device = pool_config.device if pool_config is not None else "auto"
    static = static_features(
        todo.values(), fingerprints, model=model, cache_dir=cache_dir, device=device, on_progress=on_progress
    )
    failures = probe_features(
        todo, fingerprints, static, store, model=model, spec=spec, pool_config=pool_config, on_progress=on_progress
    )
    store.flush()
    return store.table(), failures
