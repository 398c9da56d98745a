"""The base-model worker: loads a base model once, then for candidate after candidate attaches a fresh adapter,
probes it, trains it to the end or scores it on its benchmark, and removes it again.

The one machinery behind ``run`` (in process), the probe pool, ``corpus build`` and ``launch`` (as Ray actors).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field

from tuneahead_ray.base_models import load_model, load_tokenizer, resolve_device
from tuneahead_ray.data import load_dataset
from tuneahead_ray.evaluation import BenchmarkSpec, build_benchmark, default_benchmark_spec
from tuneahead_ray.features import DATASET_PROBE_FEATURES, dataset_probe_name
from tuneahead_ray.probe._base_scores import BaseScores
from tuneahead_ray.probe._features import trajectory_features
from tuneahead_ray.probe._probe import ProbeTrace, run_probe
from tuneahead_ray.probe._reference import encode_reference
from tuneahead_ray.probe._spec import DatasetProbeSpec, ProbeSpec
from tuneahead_ray.schemas import Candidate, DatasetRef, RunResult
from tuneahead_ray.training import (
    Benchmark,
    BenchmarkScore,
    EncodedPairs,
    FinishedRun,
    StepRecord,
    StepTrainer,
    attach_adapter,
    detach_adapter,
    encode_pairs,
    finish_run,
)

__all__ = ["PROBE_LOSSES_FILE", "ProbeResult", "RunWorker", "full_run"]

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


class RunWorker:
    """Holds one base model on one device (or sharded over several GPUs) and runs candidates on it: ``probe``
    (the first K steps, measured), ``run`` (train to the end, resumed from a saved probe state when given, and
    score), ``probe_and_run`` (both on one trainer, as a corpus run). Base weights are never changed."""

    def __init__(self, model: str, device: str = "auto", gpus: int = 1):
        """``gpus`` > 1: the model is sharded over that many GPUs (a model larger than one)."""
        self.model_name = model
        self.device = resolve_device(device)
        self.tokenizer = load_tokenizer(model)
        self.model = load_model(model, self.device, gpus)
        self._pairs: OrderedDict[tuple[str, str, int], EncodedPairs] = OrderedDict()
        self._fingerprints: dict[tuple[str, int, int], str] = {}
        self._references: dict[tuple[str | None, int], EncodedPairs | None] = {}
        self._base_scores = BaseScores()
        self._benchmarks: dict[BenchmarkSpec, tuple[Benchmark, BenchmarkScore]] = {}
        self.name = f"{socket.gethostname()}:{os.getpid()}:{self.device}"

    # ------------------------------------------------------------------------------------------ data

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

    def _benchmark(self, spec: BenchmarkSpec | None) -> tuple[Benchmark, BenchmarkScore]:
        """The benchmark of ``spec`` (the model's default when None) and the base model's score on it, once."""
        spec = spec or default_benchmark_spec(self.model_name)
        if spec not in self._benchmarks:
            benchmark = build_benchmark(spec)
            self._benchmarks[spec] = (benchmark, benchmark.score(self.model, self.tokenizer))
        return self._benchmarks[spec]

    def base_score(self, spec: BenchmarkSpec | None = None) -> BenchmarkScore:
        """The untouched base model's score on the benchmark of ``spec``."""
        return self._benchmark(spec)[1]

    # ------------------------------------------------------------------------------------------ runs

    def _trainer(self, candidate: Candidate) -> StepTrainer:
        pairs = self._encoded(candidate)
        adapted = attach_adapter(self.model, candidate.hp)
        try:
            total = candidate.hp.total_steps(len(pairs))
            return StepTrainer(adapted, pairs, candidate.hp, total, self.tokenizer.pad_token_id)
        except BaseException:
            self.model = detach_adapter(adapted)
            raise

    def _probe_trace(self, trainer: StepTrainer, candidate: Candidate, spec: ProbeSpec) -> ProbeTrace:
        steps = spec.steps_for(trainer.total_steps)
        return run_probe(trainer, steps, spec, self._reference(spec), self._base_scores, self._data_key(candidate))

    def _probe_result(self, candidate: Candidate, trainer: StepTrainer, trace: ProbeTrace, spec: ProbeSpec,
                      started: float, state_dir: str | None) -> ProbeResult:  # fmt: skip
        features = trajectory_features(trace, spec)
        return ProbeResult(
            candidate_id=candidate.candidate_id(self._fingerprint(candidate)),
            features=features,
            probe_steps=len(trace.losses),
            total_steps=trainer.total_steps,
            num_examples=len(trainer.pairs),
            truncated_examples=trainer.pairs.truncated,
            tokens=trace.tokens,
            probe_seconds=time.perf_counter() - started,
            diverged=bool(features["probe_diverged"]),
            state_dir=state_dir,
            worker=self.name,
        )

    def probe(self, candidate: Candidate, spec: ProbeSpec, state_dir: str | None = None) -> ProbeResult:
        """Probe one candidate; a diverging run is a result with ``diverged=True``, not an exception."""
        started = time.perf_counter()
        trainer = self._trainer(candidate)
        try:
            trace = self._probe_trace(trainer, candidate, spec)
            saved = _save_state(trainer, trace.losses, state_dir) if state_dir else None
        finally:
            self.model = detach_adapter(trainer.model)
        return self._probe_result(candidate, trainer, trace, spec, started, saved)

    def dataset_probe(self, dataset: DatasetRef, spec: ProbeSpec, dataset_spec: DatasetProbeSpec) -> ProbeResult:
        """The per-dataset standardized probe: ``dataset_spec``'s fixed-hyperparameter LoRA run of
        ``hp.max_steps`` steps on ``dataset``, measured like a candidate's probe; its features are named
        ``dataset_probe_*`` (:data:`~tuneahead_ray.features.DATASET_PROBE_FEATURES`)."""
        candidate = Candidate(model=self.model_name, dataset=dataset, hp=dataset_spec.hp)
        result = self.probe(candidate, dataset_spec.probe_spec(spec))
        features = {dataset_probe_name(name): value for name, value in result.features.items()}
        return result.model_copy(update={"features": {name: features[name] for name in DATASET_PROBE_FEATURES}})

    def _result(self, candidate: Candidate, trainer: StepTrainer, run: FinishedRun, base: BenchmarkScore,
                started: float, resumed_from: str | None) -> RunResult:  # fmt: skip
        return RunResult(
            candidate_id=candidate.candidate_id(self._fingerprint(candidate)),
            model=candidate.model,
            dataset=str(candidate.dataset.path),
            hp=candidate.hp,
            score=run.score.score,
            base_score=base.score,
            loss_curve=run.losses,
            steps=len(run.losses),
            num_examples=len(trainer.pairs),
            tokens_processed=run.tokens,
            train_seconds=run.train_seconds,
            eval_seconds=run.eval_seconds,
            wall_seconds=time.perf_counter() - started,
            diverged=run.diverged,
            device=str(self.device),
            per_family=run.score.breakdown,
            resumed_from=resumed_from,
        )

    def run(
        self,
        candidate: Candidate,
        benchmark: BenchmarkSpec | None = None,
        state_dir: str | None = None,
        on_step: Callable[[StepRecord], None] | None = None,
    ) -> RunResult:
        """Train the candidate to the end of its schedule (continuing from ``state_dir``, a saved probe state,
        when it holds one) and score it on ``benchmark`` (the model's default when None)."""
        started = time.perf_counter()
        scorer, base = self._benchmark(benchmark)
        trainer = self._trainer(candidate)
        try:
            losses, resumed_from = [], None
            if state_dir is not None and Path(state_dir, "trainer_state.json").is_file():
                trainer.restore_state(state_dir)
                losses = json.loads(Path(state_dir, PROBE_LOSSES_FILE).read_text(encoding="utf-8"))
                resumed_from = str(state_dir)
            run = finish_run(trainer, self.tokenizer, scorer, losses, on_step=on_step)
        finally:
            self.model = detach_adapter(trainer.model)
        return self._result(candidate, trainer, run, base, started, resumed_from)

    def probe_and_run(
        self,
        candidate: Candidate,
        spec: ProbeSpec,
        benchmark: BenchmarkSpec | None = None,
        on_probe: Callable[[ProbeResult, list[float]], None] | None = None,
        on_step: Callable[[StepRecord], None] | None = None,
    ) -> tuple[ProbeResult, RunResult]:
        """A corpus run: the probe as the first K steps of the run's own trainer, then the same trainer to the
        end and the score, so the ground truth is exactly the run whose start the probe measured.

        ``on_probe(probe, losses)`` is called between the two with the probe and its per-step losses, and
        ``on_step`` after each later step (a Ray Tune trial reports through them)."""
        started = time.perf_counter()
        scorer, base = self._benchmark(benchmark)
        trainer = self._trainer(candidate)
        try:
            trace = self._probe_trace(trainer, candidate, spec)
            probe = self._probe_result(candidate, trainer, trace, spec, started, None)
            if on_probe is not None:
                on_probe(probe, list(trace.losses))
            last = (trace.losses or [float("nan")])[-1], (trace.grad_norms or [float("nan")])[-1]
            stopped = len(trace.losses) < spec.steps_for(trainer.total_steps) or not all(map(math.isfinite, last))
            run = finish_run(trainer, self.tokenizer, scorer, trace.losses, diverged=stopped, on_step=on_step)
        finally:
            self.model = detach_adapter(trainer.model)
        run.train_seconds += trace.seconds
        run.tokens += trace.tokens
        return probe, self._result(candidate, trainer, run, base, started, None)

    def base_fingerprint(self) -> str:
        """Hash of the base weights: equal before and after any number of runs."""
        digest = hashlib.sha256()
        for name, tensor in sorted(self.model.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()


def full_run(
    candidate: Candidate,
    benchmark: BenchmarkSpec | None = None,
    device: str = "auto",
    on_step: Callable[[StepRecord], None] | None = None,
) -> RunResult:
    """One whole run in this process: load the base model, train the candidate to the end, score it."""
    return RunWorker(candidate.model, device).run(candidate, benchmark, on_step=on_step)
