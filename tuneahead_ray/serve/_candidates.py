"""Candidate specs over HTTP: confined to the data root, then featurized (static descriptors + probe + hp)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tuneahead_ray.features import (
    CORPUS_FEATURES,
    DATASET_PROBE_FEATURES,
    DESCRIPTOR_SAMPLE_SIZE,
    DESCRIPTORS_VERSION,
    protocol_mismatches,
)
from tuneahead_ray.schemas import Candidate, DatasetRef
from tuneahead_ray.serve._config import ServeConfig
from tuneahead_ray.serve._errors import ApiError
from tuneahead_ray.serve._schemas import CandidateSpec

__all__ = ["CandidateFeaturizer", "candidate_from_spec", "model_features_of", "protocol_problems"]

_DESCRIPTOR_CACHE_SIZE = 8


def _dataset_path(spec: CandidateSpec, index: int, data_root: Path) -> Path:
    """The dataset file, resolved (symlinks followed) and required to lie under ``data_root``."""
    where = f"candidates[{index}].dataset.path {spec.dataset.path!r}"
    try:
        path = (data_root / spec.dataset.path).resolve()
        inside, exists = path.is_relative_to(data_root), path.is_file()
    except (OSError, ValueError) as err:  # e.g. a name too long; the message would show the server's path
        raise ApiError(422, "invalid_dataset_path", f"{where}: not a usable path ({type(err).__name__})") from None
    if not inside:
        raise ApiError(403, "forbidden_path", f"{where} is outside the server's data root")
    if not exists:
        raise ApiError(422, "dataset_not_found", f"{where}: no such file under the data root")
    return path


def candidate_from_spec(spec: CandidateSpec, index: int, config: ServeConfig) -> Candidate:
    """A validated :class:`Candidate` for ``spec``; relative dataset paths are relative to the data root."""
    if config.data_root is None:
        raise ApiError(403, "candidates_disabled", "this server computes no features: it has no data_root")
    if spec.model != config.base_model:
        raise ApiError(
            422,
            "wrong_base_model",
            f"candidates[{index}].model {spec.model!r}: this server probes with {config.base_model!r}",
        )
    path = _dataset_path(spec, index, config.data_root.resolve())
    return Candidate(model=spec.model, dataset=DatasetRef(path=path, format=spec.dataset.format), hp=spec.hp)


def model_features_of(rows: Sequence[Mapping[str, Any]], features: Sequence[str]) -> list[dict[str, float]]:
    """The model's features out of (one or more) featurized candidate rows; a model trained on other columns
    cannot take candidate specs (422 naming the columns the featurizer does not produce)."""
    missing = [name for name in features if name not in rows[0]]
    if missing:
        raise ApiError(
            422,
            "features_unavailable",
            f"the model reads column(s) that candidate specs do not produce ({', '.join(map(repr, missing))}): "
            "send meta-feature rows instead",
        )
    return [{name: row[name] for name in features} for row in rows]


def protocol_problems(
    protocol: Mapping[str, Any] | None, probe: Mapping[str, Any], model_features: Sequence[str]
) -> list[str]:
    """Why the service cannot compute the features a model was trained on (its card's ``protocol``; ``None``: not
    recorded, nothing to check): ``probe`` overrides that contradict its probe, or descriptors of another version."""
    if protocol is None:
        return []
    recorded = protocol.get("probe") or {}
    problems = [
        f"probe.{key}: {recorded[key]!r} in the model's training data, {value!r} in the serve config (drop it)"
        for key, value in probe.items()
        if key in recorded and recorded[key] != value
    ]
    now = {"descriptors_version": DESCRIPTORS_VERSION, "descriptor_sample_size": DESCRIPTOR_SAMPLE_SIZE}
    problems += [
        f"{mismatch} (this release's descriptors: retrain the model on a refeatured corpus)"
        for mismatch in protocol_mismatches(dict(protocol), now, model_features)
    ]
    return problems


class CandidateFeaturizer:
    """Loads the base model once; a candidate's meta-feature row is its dataset's static descriptors and, when the
    served model reads them, its dataset's standardized probe features (both cached per dataset content), its probe
    features and its hyperparameters, as produced by ``tuneahead-ray features``. ``model_features`` (the served
    model's columns) must all be corpus features.

    Probes run one at a time (they attach adapters to the one model). torch is imported here, not at module
    level, so that the prediction replicas never load it.
    """

    def __init__(
        self,
        base_model: str,
        probe: Mapping[str, float],
        device: str = "auto",
        model_features: Sequence[str] = (),
        protocol: Mapping[str, Any] | None = None,
    ) -> None:
        from tuneahead_ray.probe import DatasetProbeSpec, ProbeSpec, RunWorker

        unavailable = [name for name in model_features if name not in CORPUS_FEATURES]
        if unavailable:  # refuse at deploy time rather than after every probe
            raise ValueError(
                f"the model reads column(s) that candidate specs do not produce ({', '.join(map(repr, unavailable))}):"
                " serve it without data_root"
            )
        # The model's training protocol (its card's, when recorded) is the default; ``probe`` overrides it.
        trained = dict(protocol or {})
        self.spec = ProbeSpec.model_validate({**trained.get("probe", {}), **dict(probe)})
        #: The corpus's dataset-probe protocol, run only for a model that reads its features.
        self.dataset_spec = None
        if set(model_features) & set(DATASET_PROBE_FEATURES):
            self.dataset_spec = DatasetProbeSpec.model_validate(trained.get("dataset_probe", {}))
        self.base_model, self.device = base_model, device
        self.worker = RunWorker(base_model, device)
        self._descriptors: OrderedDict[tuple[str, str], dict[str, float]] = OrderedDict()
        self._lock = threading.Lock()

    def _static(self, dataset: DatasetRef, fingerprint: str) -> dict[str, float]:
        from tuneahead_ray.descriptors.pipeline import compute_descriptors

        key = (fingerprint, dataset.format)
        if key not in self._descriptors:
            static = compute_descriptors(dataset, self.base_model, use_ray=False, device=self.device)
            if self.dataset_spec is not None:
                static |= self.worker.dataset_probe(dataset, self.spec, self.dataset_spec).features
            self._descriptors[key] = static
            while len(self._descriptors) > _DESCRIPTOR_CACHE_SIZE:
                self._descriptors.popitem(last=False)
        self._descriptors.move_to_end(key)
        return self._descriptors[key]

    def features(self, candidate: Candidate) -> dict[str, Any]:
        """The candidate's feature row (identity, every feature, probe cost); bad datasets raise DatasetError."""
        from tuneahead_ray.features.compute import feature_row

        with self._lock:
            fingerprint = candidate.dataset.fingerprint()
            static = self._static(candidate.dataset, fingerprint)
            return feature_row(candidate, fingerprint, static, self.worker.probe(candidate, self.spec))
