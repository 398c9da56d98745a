"""Building the corpus: for each sampled run, its meta-features and its ground truth, resumably, on Ray actors.

One pass per run: the probe is the first K steps of the run's own trainer (measured as the probe), and the same
trainer then continues to the full schedule, so the ground truth is exactly the run the probe saw the start of.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
from peft import PeftModel

from tuneahead_ray.corpus._sampling import CorpusSpec, dominant_family, sample_corpus_specs
from tuneahead_ray.descriptors import ModelScorer, describe_sample, describe_table
from tuneahead_ray.features import DESCRIPTOR_SAMPLE_SIZE, hp_features
from tuneahead_ray.modeling import DEFAULT_MODEL, load_model, load_tokenizer, resolve_device
from tuneahead_ray.probe import ProbeSpec, ProbeTrace, encode_reference, run_probe, trajectory_features
from tuneahead_ray.store import ResultStore
from tuneahead_ray.testbed import generate_records
from tuneahead_ray.training import (
    EncodedPairs,
    StepTrainer,
    attach_adapter,
    detach_adapter,
    encode_pairs,
    score_model,
    testbed_benchmark,
    train_to_end,
)
from tuneahead_ray.workers import PoolConfig, WorkerFailure, WorkerPool, run_into_store

__all__ = ["CorpusWorker", "build_corpus", "run_corpus_jobs", "PROXY_MAX_STEPS"]

#: The ProxyLM-style baseline fine-tunes a smaller proxy model on the same data for at most this many steps.
PROXY_MAX_STEPS = 100


def _table(spec: CorpusSpec) -> pa.Table:
    records = generate_records(spec.data)
    return pa.table(
        {
            "prompt": pa.array([r["messages"][0]["content"] for r in records], pa.string()),
            "response": pa.array([r["messages"][1]["content"] for r in records], pa.string()),
        }
    )


class CorpusWorker:
    """Holds the base (and proxy) model once; ``run`` produces one complete corpus row."""

    def __init__(self, model: str = DEFAULT_MODEL, proxy_model: str | None = None, device: str = "cpu"):
        self.model_name = model
        self.device = resolve_device(device)
        self.tokenizer = load_tokenizer(model)
        self.model = load_model(model, self.device)
        self.benchmark = testbed_benchmark()
        self.base_score, _ = score_model(self.model, self.tokenizer, self.benchmark)
        self.proxy = load_model(proxy_model, self.device) if proxy_model else None
        self.proxy_tokenizer = load_tokenizer(proxy_model) if proxy_model else None
        self.proxy_base_score = (
            score_model(self.proxy, self.proxy_tokenizer, self.benchmark)[0] if self.proxy is not None else None
        )
        self._references: dict[tuple[str | None, int], EncodedPairs | None] = {}
        self._scorer: ModelScorer | None = None

    def _describe(self, spec: CorpusSpec, rows: bool = True) -> tuple[pa.Table, dict[str, float], float]:
        """The run's regenerated data, its static descriptors (only the model-based ones unless ``rows``), and
        what they cost (seconds)."""
        table = _table(spec)
        started = time.perf_counter()
        if rows:
            static = describe_table(
                table, self.model_name, use_ray=False, sample_size=DESCRIPTOR_SAMPLE_SIZE, device=str(self.device)
            )
        else:
            if self._scorer is None:
                self._scorer = ModelScorer(self.model_name, str(self.device))
            static = describe_sample(table, self._scorer, DESCRIPTOR_SAMPLE_SIZE)
        return table, static, time.perf_counter() - started

    def _probe(
        self, table: pa.Table, spec: CorpusSpec, probe_spec: ProbeSpec
    ) -> tuple[PeftModel, StepTrainer, ProbeTrace, EncodedPairs]:
        """Attach a fresh adapter and run the probe as the first K steps of the run's own trainer.

        Returns the adapted model (the caller detaches it), the trainer, the trace and the encoded pairs.
        """
        key = (probe_spec.reference_path, probe_spec.reference_size)
        if key not in self._references:
            self._references[key] = encode_reference(self.tokenizer, *key)
        hp = spec.hp
        pairs = encode_pairs(
            self.tokenizer, table.column("prompt").to_pylist(), table.column("response").to_pylist(), hp.max_seq_len
        )
        total = hp.total_steps(len(pairs))
        adapted = attach_adapter(self.model, hp)
        try:
            trainer = StepTrainer(adapted, pairs, hp, total, self.tokenizer.pad_token_id)
            trace = run_probe(trainer, probe_spec.steps_for(total), probe_spec, self._references[key])
        except BaseException:
            self.model = detach_adapter(adapted)
            raise
        return adapted, trainer, trace, pairs

    def features(self, spec: CorpusSpec, probe_spec: ProbeSpec, row_descriptors: bool = True) -> dict:
        """Only the meta-features of a run (descriptors + probe), for refreshing a corpus without full runs.

        ``row_descriptors=False`` skips the per-row descriptors (a pure function of the data, which is regenerated
        identically) and returns only the model-based ones (and no ``descriptor_seconds``: a partial cost).
        """
        table, static, descriptor_seconds = self._describe(spec, row_descriptors)
        adapted, _, trace, _ = self._probe(table, spec, probe_spec)
        self.model = detach_adapter(adapted)
        return {
            "candidate_id": spec.run_id(),
            **static,
            **trajectory_features(trace, probe_spec),
            "probe_seconds": trace.seconds,
            **({"descriptor_seconds": descriptor_seconds} if row_descriptors else {}),
        }

    def _proxy_score(self, table: pa.Table, spec: CorpusSpec) -> tuple[float, float]:
        """Score of the proxy model fine-tuned on the same data with the run's hyperparameters (capped)."""
        started = time.perf_counter()
        pairs = encode_pairs(
            self.proxy_tokenizer,
            table.column("prompt").to_pylist(),
            table.column("response").to_pylist(),
            spec.hp.max_seq_len,
        )
        steps = min(PROXY_MAX_STEPS, spec.hp.total_steps(len(pairs)))
        adapted = attach_adapter(self.proxy, spec.hp)
        try:
            trainer = StepTrainer(adapted, pairs, spec.hp, steps, self.proxy_tokenizer.pad_token_id)
            for _ in range(steps):
                if not trainer.step().finite:
                    break
            score, _ = score_model(adapted, self.proxy_tokenizer, self.benchmark)
        finally:
            self.proxy = detach_adapter(adapted)
        return score, time.perf_counter() - started

    def run(self, spec: CorpusSpec, probe_spec: ProbeSpec) -> dict:
        table, static, descriptor_seconds = self._describe(spec)
        hp = spec.hp
        adapted, trainer, trace, pairs = self._probe(table, spec, probe_spec)
        total = trainer.total_steps
        try:
            probe_steps = probe_spec.steps_for(total)
            losses = list(trace.losses)
            healthy = len(losses) == probe_steps and math.isfinite(losses[-1]) and math.isfinite(trace.grad_norms[-1])
            started = time.perf_counter()
            healthy = healthy and train_to_end(trainer, losses)
            train_seconds = trace.seconds + time.perf_counter() - started
            started = time.perf_counter()
            score, per_family = score_model(adapted, self.tokenizer, self.benchmark)
            eval_seconds = time.perf_counter() - started
        finally:
            self.model = detach_adapter(adapted)
        proxy_score, proxy_seconds = self._proxy_score(table, spec) if self.proxy is not None else (None, None)
        return {
            "candidate_id": spec.run_id(),
            "data_spec": spec.data.model_dump_json(),
            "hp": hp.model_dump_json(),
            "family_group": dominant_family(spec.data),
            **{f"data_{k}": float(v) for k, v in spec.data.model_dump(exclude={"families", "seed"}).items()},
            **static,
            **trajectory_features(trace, probe_spec),
            **hp_features(hp, len(pairs)),
            "score": score,
            "base_score": self.base_score,
            "gain": score - self.base_score,
            "per_family": json.dumps(per_family),
            "loss_curve": losses,
            "diverged": not healthy,
            "num_examples": len(pairs),
            "probe_steps": len(trace.losses),
            "total_steps": total,
            "probe_seconds": trace.seconds,
            "train_seconds": train_seconds,
            "eval_seconds": eval_seconds,
            "descriptor_seconds": descriptor_seconds,
            "proxy_score": proxy_score,
            "proxy_base_score": self.proxy_base_score,
            "proxy_seconds": proxy_seconds,
        }


def run_corpus_jobs(
    store: ResultStore,
    method: str,
    jobs: list[tuple[str, tuple]],
    init_args: tuple,
    pool_config: PoolConfig | None,
    on_progress: Callable[[int, int], None] | None,
    flush_every: int | None = None,
) -> list[WorkerFailure]:
    """Run ``CorpusWorker.<method>`` on every job on a pool of corpus workers, appending each result to ``store``
    as it finishes; returns the jobs that failed."""
    if not jobs:
        return []
    pool = WorkerPool(CorpusWorker, init_args, pool_config or PoolConfig(device="cpu"))
    return run_into_store(pool, method, jobs, store, on_progress, flush_every)


def build_corpus(
    runs: int,
    out_dir: str | Path,
    *,
    seed: int = 0,
    model: str = DEFAULT_MODEL,
    proxy_model: str | None = None,
    probe_spec: ProbeSpec | None = None,
    pool_config: PoolConfig | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[pa.Table, list[WorkerFailure]]:
    """Sample ``runs`` corpus runs and compute the missing ones into ``out_dir/corpus.parquet``; Ray must be up."""
    store = ResultStore(Path(out_dir) / "corpus.parquet")
    probe_spec = probe_spec or ProbeSpec()
    todo = [spec for spec in sample_corpus_specs(runs, seed) if spec.run_id() not in store]
    jobs = [(spec.run_id(), (spec, probe_spec)) for spec in todo]
    init = (model, proxy_model, (pool_config or PoolConfig(device="cpu")).device)
    failures = run_corpus_jobs(store, "run", jobs, init, pool_config, on_progress, flush_every=50)
    store.flush()
    return store.table(), failures
