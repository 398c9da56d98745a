"""The probe pool: one Ray actor per GPU (or per CPU slot), with backpressure, streaming results and retries."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError, RayTaskError, WorkerCrashedError

from tuneahead_ray.probe._spec import ProbeSpec
from tuneahead_ray.probe._worker import ProbeResult, ProbeWorker
from tuneahead_ray.schemas import Candidate

__all__ = ["PoolConfig", "ProbeFailure", "ProbePool"]

_WORKER_LOST = (RayActorError, ActorDiedError, ActorUnavailableError, WorkerCrashedError)


@dataclass(frozen=True)
class PoolConfig:
    """How the pool sizes and places its actors."""

    num_workers: int | None = None  # default: one per GPU in the cluster, else one per CPU
    gpus_per_worker: float = 1.0  # a fraction packs several small-model workers on one GPU
    cpus_per_worker: float = 1.0
    max_in_flight: int = 2  # candidates queued on one actor at a time (backpressure)
    max_retries: int = 2  # resubmissions of a candidate whose actor died under it
    device: str = "auto"


@dataclass(frozen=True)
class ProbeFailure:
    """A candidate that could not be probed within the retry bound (a result too: nothing is silently lost)."""

    candidate_id: str
    error: str
    attempts: int


@dataclass
class _Job:
    key: str
    candidate: Candidate
    state_dir: str | None
    attempts: int = 0


class ProbePool:
    """Probe candidates on Ray actors that each hold the base model once; yields results as they finish."""

    def __init__(self, model: str, config: PoolConfig | None = None):
        if not ray.is_initialized():
            raise RuntimeError("ProbePool needs Ray: call ray.init() (or ray.init(address='auto')) first")
        self.model = model
        self.config = config or PoolConfig()
        gpus = ray.cluster_resources().get("GPU", 0)
        self.uses_gpus = gpus > 0
        count = self.config.num_workers
        if count is None:
            per_worker = self.config.gpus_per_worker if self.uses_gpus else self.config.cpus_per_worker
            count = max(1, int((gpus if self.uses_gpus else ray.cluster_resources().get("CPU", 1)) // per_worker))
        self._actor_class = ray.remote(ProbeWorker).options(
            num_gpus=self.config.gpus_per_worker if self.uses_gpus else 0,
            num_cpus=self.config.cpus_per_worker,
            max_restarts=0,  # a lost actor is replaced by the pool, which also resubmits its candidates
        )
        self.actors = [self._new_actor() for _ in range(count)]
        self.restarts = 0

    def _new_actor(self):
        return self._actor_class.remote(self.model, self.config.device)

    def run(
        self,
        candidates: Iterable[Candidate],
        spec: ProbeSpec,
        state_dirs: dict[str, str] | None = None,
    ) -> Iterator[ProbeResult | ProbeFailure]:
        """Probe every candidate once; at most ``max_in_flight`` per actor are queued at any time.

        ``state_dirs`` maps a candidate id to a directory where its trainer state is saved for a GO run.
        """
        queue = deque(
            _Job(key, c, (state_dirs or {}).get(key))
            for c in candidates
            for key in [c.candidate_id(c.dataset.fingerprint())]
        )
        in_flight: dict[ray.ObjectRef, tuple[int, object, _Job]] = {}
        load = [0] * len(self.actors)
        while queue or in_flight:
            for slot in range(len(self.actors)):
                while queue and load[slot] < self.config.max_in_flight:
                    job = queue.popleft()
                    job.attempts += 1
                    actor = self.actors[slot]
                    in_flight[actor.probe.remote(job.candidate, spec, job.state_dir)] = (slot, actor, job)
                    load[slot] += 1
            done, _ = ray.wait(list(in_flight), num_returns=1)
            slot, actor, job = in_flight.pop(done[0])
            load[slot] -= 1
            try:
                yield ray.get(done[0])
            except _WORKER_LOST as err:
                if self.actors[slot] is actor:  # first news of this loss: replace the actor once
                    self.actors[slot] = self._new_actor()
                    self.restarts += 1
                if job.attempts <= self.config.max_retries:
                    queue.appendleft(job)
                else:
                    yield ProbeFailure(job.key, f"worker lost {job.attempts} times: {type(err).__name__}", job.attempts)
            except RayTaskError as err:  # the probe itself raised (bad data, out of memory): report, don't retry
                yield ProbeFailure(job.key, str(err.cause if err.cause is not None else err), job.attempts)

    def shutdown(self) -> None:
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []
