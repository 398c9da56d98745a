"""Building the corpus: for each sampled run, its meta-features and its ground truth, resumably, on Ray actors.

One pass per run: the probe is the first K steps of the run's own trainer (measured as the probe), and the same
trainer then continues to the full schedule, so the ground truth is exactly the run the probe saw the start of.
Each run also has its dataset's standardized probe (fixed hyperparameters, shared by every candidate on a dataset)
and the scores of two proxy models fine-tuned on the same data for the ProxyLM-style baseline.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from tuneahead_ray._private.store import ResultStore
from tuneahead_ray._private.workers import PoolConfig, WorkerFailure, WorkerPool, run_into_store
from tuneahead_ray.base_models import DEFAULT_MODEL
from tuneahead_ray.corpus._sampling import CorpusSpec, dominant_family, sample_corpus_specs
from tuneahead_ray.data import write_jsonl
from tuneahead_ray.descriptors import RowFeaturizer, row_stats
from tuneahead_ray.descriptors.model_pass import ModelScorer, describe_sample
from tuneahead_ray.descriptors.pipeline import describe_table
from tuneahead_ray.evaluation import TestbedSpec
from tuneahead_ray.features import DESCRIPTOR_SAMPLE_SIZE, hp_features, open_feature_store
from tuneahead_ray.probe import DatasetProbeSpec, ProbeResult, ProbeSpec, RunWorker
from tuneahead_ray.schemas import Candidate, DatasetRef, HyperParams
from tuneahead_ray.testbed import benchmark_items, generate_records

__all__ = ["CorpusWorker", "build_corpus", "ground_truth_protocol", "run_corpus_jobs", "PROXY_MAX_STEPS"]

#: The ProxyLM-style baseline fine-tunes a smaller proxy model on the same data for at most this many steps.
PROXY_MAX_STEPS = 100


def _table(records: list[dict]) -> pa.Table:
    return pa.table(
        {
            "prompt": pa.array([r["messages"][0]["content"] for r in records], pa.string()),
            "response": pa.array([r["messages"][1]["content"] for r in records], pa.string()),
        }
    )


class CorpusWorker:
    """One corpus run per call, on the base-model worker (:class:`RunWorker`) of the embedded model and of each
    proxy: the run's data regenerated from its spec, its static descriptors, its dataset's standardized probe, its
    probe as the first K steps of its own trainer continued to the end and scored on the testbed benchmark, and the
    proxies' scores on the same data (``proxy``: the default proxy, ``strong_proxy``: the stronger one, both
    optional)."""

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        proxy_model: str | None = None,
        device: str = "cpu",
        strong_proxy_model: str | None = None,
        benchmark: TestbedSpec | None = None,
        dataset_probe: DatasetProbeSpec | None = None,
    ):
        self.model_name = model
        self.device = device
        self.runs = RunWorker(model, device)
        self.benchmark = benchmark or TestbedSpec()
        self.dataset_probe_spec = dataset_probe or DatasetProbeSpec()
        self.proxies = {
            name: RunWorker(path, device)
            for name, path in (("proxy", proxy_model), ("strong_proxy", strong_proxy_model))
            if path
        }
        self._data_dir = Path(tempfile.mkdtemp(prefix="tuneahead-corpus-"))
        self._scorer: ModelScorer | None = None
        self._rows: RowFeaturizer | None = None

    def _data(self, spec: CorpusSpec) -> tuple[list[dict], Candidate]:
        """The run's regenerated records, written to a file the run worker trains on (removed after the run)."""
        records = generate_records(spec.data)
        path = write_jsonl(records, self._data_dir / f"{spec.run_id()}.jsonl")
        return records, Candidate(model=self.model_name, dataset=DatasetRef(path=path), hp=spec.hp)

    def _describe(self, records: list[dict], rows: bool = True) -> tuple[dict[str, float], float]:
        """The run's static descriptors (only the model-based ones unless ``rows``) and what they cost (s)."""
        table = _table(records)
        started = time.perf_counter()
        if rows:
            static = describe_table(
                table, self.model_name, use_ray=False, sample_size=DESCRIPTOR_SAMPLE_SIZE, device=self.device
            )
        else:
            if self._scorer is None:
                self._scorer = ModelScorer(self.model_name, self.device)
            static = describe_sample(table, self._scorer, DESCRIPTOR_SAMPLE_SIZE)
        return static, time.perf_counter() - started

    def features(self, spec: CorpusSpec, probe_spec: ProbeSpec, row_descriptors: bool = True) -> dict:
        """Only the meta-features of a run (descriptors + probe), for refreshing a corpus without full runs.

        ``row_descriptors=False`` skips the per-row descriptors (a pure function of the data, which is regenerated
        identically) and returns only the model-based ones (and no ``descriptor_seconds``: a partial cost).
        """
        records, candidate = self._data(spec)
        try:
            static, descriptor_seconds = self._describe(records, row_descriptors)
            dataset_probe = self.runs.dataset_probe(candidate.dataset, probe_spec, self.dataset_probe_spec)
            probe = self.runs.probe(candidate, probe_spec)
        finally:
            candidate.dataset.path.unlink(missing_ok=True)
        return {
            "candidate_id": spec.run_id(),
            **static,
            **probe.features,
            **_dataset_probe_columns(dataset_probe),
            "probe_seconds": probe.probe_seconds,
            **({"descriptor_seconds": descriptor_seconds} if row_descriptors else {}),
        }

    def row_descriptors(self, spec: CorpusSpec) -> dict:
        """Only the per-row descriptors of a run: a pure function of its regenerated data (no model pass, no probe),
        for refreshing a corpus after a per-row descriptor was added or changed."""
        if self._rows is None:
            self._rows = RowFeaturizer(self.model_name)
        return {"candidate_id": spec.run_id(), **row_stats(self._rows(_table(generate_records(spec.data))))}

    def _proxy_columns(self, candidate: Candidate, total_steps: int) -> dict:
        """Per proxy (``proxy``, ``strong_proxy``): its score fine-tuned on the same data with the run's
        hyperparameters for at most ``PROXY_MAX_STEPS`` steps (the schedule compressed to them), its base score and
        the seconds it took; None for a proxy this worker does not have."""
        columns: dict = {}
        for name in ("proxy", "strong_proxy"):
            score = base = seconds = None
            if (worker := self.proxies.get(name)) is not None:
                started = time.perf_counter()
                hp = HyperParams.model_validate(
                    {**candidate.hp.model_dump(), "max_steps": min(PROXY_MAX_STEPS, total_steps)}
                )
                score = worker.run(candidate.model_copy(update={"hp": hp}), self.benchmark).score
                seconds = time.perf_counter() - started
                base = worker.base_score(self.benchmark).score
            columns |= {f"{name}_score": score, f"{name}_base_score": base, f"{name}_seconds": seconds}
        return columns

    def run(self, spec: CorpusSpec, probe_spec: ProbeSpec) -> dict:
        records, candidate = self._data(spec)
        try:
            static, descriptor_seconds = self._describe(records)
            dataset_probe = self.runs.dataset_probe(candidate.dataset, probe_spec, self.dataset_probe_spec)
            probe, result = self.runs.probe_and_run(candidate, probe_spec, self.benchmark)
            proxies = self._proxy_columns(candidate, probe.total_steps)
        finally:
            candidate.dataset.path.unlink(missing_ok=True)
        hp = spec.hp
        return {
            "candidate_id": spec.run_id(),
            "data_spec": spec.data.model_dump_json(),
            "hp": hp.model_dump_json(),
            "family_group": dominant_family(spec.data),
            **{f"data_{k}": float(v) for k, v in spec.data.model_dump(exclude={"families", "seed"}).items()},
            **static,
            **probe.features,
            **_dataset_probe_columns(dataset_probe),
            **hp_features(hp, result.num_examples),
            "score": result.score,
            "base_score": self.runs.base_score(self.benchmark).score,  # scored once per worker, on first use
            "gain": result.gain,
            "per_family": json.dumps(result.per_family),
            "loss_curve": result.loss_curve,
            "diverged": result.diverged,
            "num_examples": result.num_examples,
            "probe_steps": probe.probe_steps,
            "total_steps": probe.total_steps,
            "probe_seconds": probe.probe_seconds,
            "train_seconds": result.train_seconds,
            "eval_seconds": result.eval_seconds,
            "descriptor_seconds": descriptor_seconds,
            "benchmark_items": len(benchmark_items(self.benchmark.items_per_cell)),
            **proxies,
        }


def ground_truth_protocol(model: str, proxy_model: str | None, strong_proxy_model: str | None) -> dict:
    """How a testbed corpus's ground truth is measured: the benchmark and the models by directory name (the same
    on every machine)."""
    return {
        "benchmark": TestbedSpec().model_dump(mode="json"),
        "model": Path(model).name,
        "proxy_model": Path(proxy_model).name if proxy_model else None,
        "strong_proxy_model": Path(strong_proxy_model).name if strong_proxy_model else None,
    }


def _dataset_probe_columns(result: ProbeResult) -> dict:
    """The dataset probe's features and what it cost (its seconds, charged once per dataset)."""
    return {**result.features, "dataset_probe_seconds": result.probe_seconds}


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
    strong_proxy_model: str | None = None,
    probe_spec: ProbeSpec | None = None,
    pool_config: PoolConfig | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[pa.Table, list[WorkerFailure]]:
    """Sample ``runs`` corpus runs and compute the missing ones into ``out_dir/corpus.parquet``; Ray must be up.

    The corpus records its protocol (probe, dataset probe, descriptors, benchmark, base model and proxies) beside
    it, and resuming a corpus built under another one is refused: its scores would not be comparable.
    """
    probe_spec = probe_spec or ProbeSpec()
    store = open_feature_store(
        Path(out_dir) / "corpus.parquet",
        probe_spec,
        DatasetProbeSpec(),
        ground_truth=ground_truth_protocol(model, proxy_model, strong_proxy_model),
    )
    todo = [spec for spec in sample_corpus_specs(runs, seed) if spec.run_id() not in store]
    jobs = [(spec.run_id(), (spec, probe_spec)) for spec in todo]
    init = (model, proxy_model, (pool_config or PoolConfig(device="cpu")).device, strong_proxy_model)
    failures = run_corpus_jobs(store, "run", jobs, init, pool_config, on_progress, flush_every=50)
    store.flush()
    return store.table(), failures
