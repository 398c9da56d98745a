"""A probe worker: loads the base model once, then probes candidate after candidate with fresh adapters."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections import OrderedDict
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field

from tuneahead_ray.data import load_dataset
from tuneahead_ray.modeling import load_model, load_tokenizer, resolve_device
from tuneahead_ray.probe._base import BaseScores
from tuneahead_ray.probe._features import trajectory_features
from tuneahead_ray.probe._probe import run_probe
from tuneahead_ray.probe._reference import encode_reference
from tuneahead_ray.probe._spec import ProbeSpec
from tuneahead_ray.schemas import Candidate
from tuneahead_ray.training import EncodedPairs, StepTrainer, attach_adapter, detach_adapter, encode_pairs

__all__ = ["PROBE_LOSSES_FILE", "ProbeResult", "ProbeWorker"]

_PAIRS_CACHE_SIZE = 8


#: Beside the saved trainer state: the probe's per-step losses, so a resumed run has its whole loss curve.
PROBE_LOSSES_FILE = "probe_losses.json"


def _save_state(trainer: StepTrainer, losses: list[float], state_dir: str) -> str:
    directory = trainer.save_state(Path(state_dir))
    (directory / PROBE_LOSSES_FILE).write_text(json.dumps(losses), encoding="utf-8")
    return str(directory)


class ProbeResult(BaseModel):
    """What a probe returns across the process boundary."""

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants")

    candidate_id: str
    features: dict[str, float] = Field(description="PROBE_FEATURES values (NaN where undefined).")
    probe_steps: int = Field(ge=0)
    total_steps: int = Field(ge=1, description="Steps of the candidate's full run.")
    num_examples: int = Field(ge=0)
    truncated_examples: int = Field(ge=0, description="Rows whose prompt was cut to fit max_seq_len.")
    tokens: int = Field(ge=0)
    probe_seconds: float = Field(ge=0)
    diverged: bool
    state_dir: str | None = Field(None, description="Saved trainer state a GO run can resume from.")
    worker: str = ""


class ProbeWorker:
    """Holds one base model on one device (or sharded over several GPUs); ``probe`` attaches an adapter, runs K
    steps and removes it again."""

    def __init__(self, model: str, device: str = "auto", gpus: int = 1):
        """``gpus`` > 1: the model is sharded over that many GPUs (a model larger than one)."""
        self.device = resolve_device(device)
        self.tokenizer = load_tokenizer(model)
        self.model = load_model(model, self.device, gpus)
        self._pairs: OrderedDict[tuple[str, str, int], EncodedPairs] = OrderedDict()
        self._fingerprints: dict[tuple[str, int, int], str] = {}
        self._references: dict[tuple[str | None, int], EncodedPairs | None] = {}
        self._base_scores = BaseScores()
        self.name = f"{socket.gethostname()}:{os.getpid()}:{self.device}"

    def _fingerprint(self, candidate: Candidate) -> str:
        """The dataset's content hash, re-read only when the file's size or modification time changes."""
        stat = candidate.dataset.path.stat()
        key = (str(candidate.dataset.path), stat.st_size, stat.st_mtime_ns)
        if key not in self._fingerprints:
            self._fingerprints[key] = candidate.dataset.fingerprint()
        return self._fingerprints[key]

    def _data_key(self, candidate: Candidate) -> tuple[str, str, int]:
        """What the encoded training pairs depend on: dataset content, its record layout and max_seq_len."""
        return (self._fingerprint(candidate), candidate.dataset.format, candidate.hp.max_seq_len)

    def _encoded(self, candidate: Candidate) -> EncodedPairs:
        """Encoded training pairs, cached per :meth:`_data_key` since grids reuse datasets."""
        key = self._data_key(candidate)
        if key not in self._pairs:
            table = load_dataset(candidate.dataset)
            self._pairs[key] = encode_pairs(
                self.tokenizer,
                table.column("prompt").to_pylist(),
                table.column("response").to_pylist(),
                candidate.hp.max_seq_len,
            )
            while len(self._pairs) > _PAIRS_CACHE_SIZE:
                self._pairs.popitem(last=False)
        self._pairs.move_to_end(key)
        return self._pairs[key]

    def _reference(self, spec: ProbeSpec) -> EncodedPairs | None:
        """The spec's reference set, encoded once per worker."""
        key = (spec.reference_path, spec.reference_size)
        if key not in self._references:
            self._references[key] = encode_reference(self.tokenizer, *key)
        return self._references[key]

    def probe(self, candidate: Candidate, spec: ProbeSpec, state_dir: str | None = None) -> ProbeResult:
        """Probe one candidate; a diverging run is a result with ``diverged=True``, not an exception."""
        started = time.perf_counter()
        pairs = self._encoded(candidate)
        total = candidate.hp.total_steps(len(pairs))
        adapted = attach_adapter(self.model, candidate.hp)
        try:
            trainer = StepTrainer(adapted, pairs, candidate.hp, total, self.tokenizer.pad_token_id)
            steps = spec.steps_for(total)
            reference = self._reference(spec)
            trace = run_probe(trainer, steps, spec, reference, self._base_scores, self._data_key(candidate))
            saved = _save_state(trainer, trace.losses, state_dir) if state_dir else None
        finally:
            self.model = detach_adapter(adapted)
        features = trajectory_features(trace, spec)
        return ProbeResult(
            candidate_id=candidate.candidate_id(self._fingerprint(candidate)),
            features=features,
            probe_steps=len(trace.losses),
            total_steps=total,
            num_examples=len(pairs),
            truncated_examples=pairs.truncated,
            tokens=trace.tokens,
            probe_seconds=time.perf_counter() - started,
            diverged=bool(features["probe_diverged"]),
            state_dir=saved,
            worker=self.name,
        )

    def base_fingerprint(self) -> str:
        """Hash of the base weights: equal before and after any number of probes."""
        digest = hashlib.sha256()
        for name, tensor in sorted(self.model.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()
