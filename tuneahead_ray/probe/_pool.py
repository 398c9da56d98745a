"""The probe pool: probe workers on the generic actor pool, one per GPU (or per CPU slot)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from tuneahead_ray._private.workers import PoolConfig, WorkerFailure, WorkerPool
from tuneahead_ray.probe._spec import DatasetProbeSpec, ProbeSpec
from tuneahead_ray.probe._worker import ProbeResult, RunWorker
from tuneahead_ray.schemas import Candidate, DatasetRef

__all__ = ["ProbePool"]


class ProbePool(WorkerPool):
    """Probe workers that each hold the base model once; ``run`` yields results as they finish."""

    def __init__(self, model: str, config: PoolConfig | None = None):
        config = config or PoolConfig()
        super().__init__(RunWorker, (model, config.device, config.shards), config)

    def run(
        self,
        candidates: Iterable[Candidate] | Mapping[str, Candidate],
        spec: ProbeSpec,
        state_dirs: dict[str, str] | None = None,
    ) -> Iterator[ProbeResult | WorkerFailure]:
        """Probe every candidate once; pass a mapping of candidate ids to candidates to skip re-hashing datasets.

        ``state_dirs`` maps a candidate id to where its trainer state is saved.
        """
        if not isinstance(candidates, Mapping):
            candidates = {c.candidate_id(c.dataset.fingerprint()): c for c in candidates}
        jobs = ((key, (candidate, spec, (state_dirs or {}).get(key))) for key, candidate in candidates.items())
        for _, result in self.map_unordered("probe", jobs):
            yield result

    def dataset_probes(
        self, datasets: Mapping[str, DatasetRef], spec: ProbeSpec, dataset_spec: DatasetProbeSpec
    ) -> Iterator[tuple[str, ProbeResult | WorkerFailure]]:
        """The standardized probe of every dataset once (``datasets`` by key, e.g. content fingerprint); yields
        ``(key, result)`` as each finishes."""
        jobs = ((key, (dataset, spec, dataset_spec)) for key, dataset in datasets.items())
        yield from self.map_unordered("dataset_probe", jobs)
