"""The feature checkpoint's protocol: rows computed under another probe spec or descriptor version are refused."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel

from tuneahead_ray._private.atomic import write_text_atomic
from tuneahead_ray._private.store import ResultStore
from tuneahead_ray.features._names import (
    DATASET_PROBE_FEATURES,
    DESCRIPTOR_SAMPLE_SIZE,
    DESCRIPTORS_VERSION,
    PROBE_FEATURES,
    STATIC_FEATURES,
)

__all__ = [
    "FeatureProtocolError",
    "dataset_probe_path",
    "feature_protocol",
    "open_feature_store",
    "protocol_differences",
    "protocol_mismatches",
    "protocol_path",
    "read_protocol",
]


class FeatureProtocolError(ValueError):
    """A feature checkpoint computed under another protocol than the one asked for now."""


def feature_protocol(spec: BaseModel, dataset_probe: BaseModel | None = None, ground_truth: dict | None = None) -> dict:
    """What every stored feature row depends on besides its candidate: the probe spec (and the dataset probe's), the
    descriptors' version and sample size and, for a corpus, how its ground truth was measured (``ground_truth``:
    benchmark, proxies). Rows computed under different protocols are not comparable."""
    protocol = {
        "probe": spec.model_dump(mode="json"),
        "descriptors_version": DESCRIPTORS_VERSION,
        "descriptor_sample_size": DESCRIPTOR_SAMPLE_SIZE,
    }
    if dataset_probe is not None:
        protocol["dataset_probe"] = dataset_probe.model_dump(mode="json")
    if ground_truth is not None:
        protocol["ground_truth"] = ground_truth
    return protocol


def _flat(protocol: dict, prefix: str = "") -> dict:
    """``{"probe": {"max_steps": 100}}`` -> ``{"probe.max_steps": 100}``, at any depth."""
    flat = {}
    for key, value in protocol.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _changed_keys(before: dict, now: dict) -> list[str]:
    """The keys of two flat protocols whose values differ (or that only one has), sorted."""
    return sorted(key for key in before.keys() | now.keys() if before.get(key) != now.get(key))


def dataset_probe_path(out_path: str | Path) -> Path:
    """Where the dataset probes of a feature file are checkpointed: ``<name>.dataset_probes.parquet`` beside it."""
    out_path = Path(out_path)
    return out_path.with_name(f"{out_path.stem}.dataset_probes.parquet")


def protocol_path(data_path: str | Path) -> Path:
    """Where the protocol of a feature or corpus file is recorded: ``<name>.protocol.json`` beside it."""
    data_path = Path(data_path)
    return data_path.with_name(data_path.name + ".protocol.json")


def read_protocol(data_path: str | Path) -> dict | None:
    """The recorded feature protocol of a feature or corpus file, without how its ground truth was measured;
    ``None`` when none is recorded. A file whose dataset probes are checkpointed beside it (``<stem>
    .dataset_probes.parquet``, as a grid's corpus) takes the dataset probe's protocol from there."""
    path = protocol_path(data_path)
    if not path.exists():
        return None
    protocol = json.loads(path.read_text(encoding="utf-8"))
    protocol.pop("ground_truth", None)
    probes = protocol_path(dataset_probe_path(data_path))
    if "dataset_probe" not in protocol and probes.exists():
        recorded = json.loads(probes.read_text(encoding="utf-8"))
        if "dataset_probe" in recorded:
            protocol["dataset_probe"] = recorded["dataset_probe"]
    return protocol


def protocol_differences(first: dict, second: dict) -> list[str]:
    """Every field in which two recorded protocols differ, as ``"probe.max_steps: 100 vs 50"``."""
    a, b = _flat(first), _flat(second)
    return [f"{key}: {a.get(key)!r} vs {b.get(key)!r}" for key in _changed_keys(a, b)]


def protocol_mismatches(trained: dict | None, used: dict, features: Sequence[str]) -> list[str]:
    """The protocol fields that differ between a predictor's training data (``trained``; ``None``: not recorded,
    nothing to compare) and the features computed now (``used``), among those that ``features`` read: the
    descriptors' for static features, the probe's for probe features, the dataset probe's for its features."""
    if trained is None:
        return []
    read = set(features)
    parts = []
    if read & set(STATIC_FEATURES):
        parts += ["descriptors_version", "descriptor_sample_size"]
    if read & set(PROBE_FEATURES):
        parts.append("probe")
    if read & set(DATASET_PROBE_FEATURES):
        parts.append("dataset_probe")
    parts = [part for part in parts if part in trained and part in used]  # a part not recorded: unknown
    before = _flat({part: trained.get(part) for part in parts})
    now = _flat({part: used.get(part) for part in parts})
    return [
        f"{key}: {before.get(key)!r} in the predictor's training data, {now.get(key)!r} here"
        for key in _changed_keys(before, now)
    ]


def open_feature_store(
    path: str | Path,
    spec: BaseModel,
    dataset_probe: BaseModel | None = None,
    key: str = "candidate_id",
    ground_truth: dict | None = None,
) -> ResultStore:
    """The feature checkpoint at ``path`` for resuming (rows keyed by ``key``), with its protocol recorded beside it.

    A checkpoint computed under another protocol (another probe spec, an older descriptor version), or one that does
    not say, is refused with an error naming the file: resuming it would mix rows that are not comparable.
    """
    store = ResultStore(path, key)
    recorded = protocol_path(store.parquet_path)
    protocol = feature_protocol(spec, dataset_probe, ground_truth)
    remedy = f"delete {store.parquet_path}, {store.checkpoint_path} and {recorded} (or write elsewhere) to recompute"
    if recorded.exists() and len(store):
        saved = json.loads(recorded.read_text(encoding="utf-8"))
        if saved != protocol:
            changed = _changed_keys(_flat(saved), _flat(protocol))
            raise FeatureProtocolError(
                f"{store.parquet_path}: its {len(store)} rows were computed with another feature protocol "
                f"(differs in {', '.join(changed)}); {remedy}"
            )
    elif len(store) and not recorded.exists():
        raise FeatureProtocolError(
            f"{store.parquet_path}: its {len(store)} rows do not record their feature protocol "
            f"({recorded.name} is missing, written by an older version); {remedy}"
        )
    else:
        write_text_atomic(json.dumps(protocol, indent=2, sort_keys=True) + "\n", recorded)
    return store
