"""The feature checkpoint's protocol: rows computed under another probe spec or descriptor version are refused."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from tuneahead_ray._private.atomic import write_text_atomic
from tuneahead_ray._private.store import ResultStore
from tuneahead_ray.features._names import DESCRIPTOR_SAMPLE_SIZE, DESCRIPTORS_VERSION

__all__ = ["FeatureProtocolError", "feature_protocol", "open_feature_store"]


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


def _flat(protocol: dict) -> dict:
    return {
        f"{part}.{key}" if isinstance(value, dict) else part: inner
        for part, value in protocol.items()
        for key, inner in (value.items() if isinstance(value, dict) else [(None, value)])
    }


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
    protocol_path = store.parquet_path.with_name(store.parquet_path.name + ".protocol.json")
    protocol = feature_protocol(spec, dataset_probe, ground_truth)
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
        write_text_atomic(json.dumps(protocol, indent=2, sort_keys=True) + "\n", protocol_path)
    return store
