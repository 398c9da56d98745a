"""A pool of stateful Ray actors (one per GPU, or per CPU slot) with backpressure, streaming results and retries.

Each actor is built once (it loads the base model once) and then serves many jobs. At most ``max_in_flight``
jobs wait on one actor; results stream back as they finish; a job whose actor died under it is resubmitted to a
replacement actor, up to ``max_retries`` times, and then reported as a failure rather than lost.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError, RayTaskError, WorkerCrashedError

__all__ = ["PoolConfig", "WorkerFailure", "WorkerPool", "run_into_store"]

_WORKER_LOST = (RayActorError, ActorDiedError, ActorUnavailableError, WorkerCrashedError)
ADAPTIVE_TIMEOUT_FLOOR_S = 120.0


@dataclass(frozen=True)
class PoolConfig:
    """How the pool sizes and places its actors."""

    num_workers: int | None = None  # default: one per GPU in the cluster, else one per CPU
    gpus_per_worker: float = 1.0  # a fraction packs several small-model workers on one GPU
    # None: request GPUs when the cluster has some now or `device` asks for CUDA. True: request them even when
    # none is up yet, so that an autoscaling cluster scaling from zero sees the GPU demand and adds GPU nodes.
    use_gpus: bool | None = None
    cpus_per_worker: float = 1.0
    max_in_flight: int = 2  # jobs queued on one actor at a time (backpressure)
    max_retries: int = 2  # resubmissions of a job whose actor died under it
    device: str = "auto"
    # A job unanswered this long counts as lost: its actor is killed and replaced and the job resubmitted (a
    # result can vanish without an error when a node dies). None: 20x the median job time once 3 jobs finished,
    # never under ADAPTIVE_TIMEOUT_FLOOR_S.
    job_timeout_s: float | None = None


@dataclass(frozen=True)
class WorkerFailure:
    """A job that could not be finished within the retry bound, or that raised: a result too, never dropped."""

    key: str
    error: str
    attempts: int


@dataclass
class _Job:
    key: str
    args: tuple
    attempts: int = 0


def _requests_gpus(config: PoolConfig, cluster_gpus: float) -> bool:
    if config.use_gpus is not None:
        return config.use_gpus
    return cluster_gpus > 0 or config.device.startswith("cuda")


class WorkerPool:
    """Actors of ``worker_cls(*init_args)``; ``map_unordered`` calls one method on every job's arguments."""

    def __init__(self, worker_cls: type, init_args: tuple, config: PoolConfig | None = None):
        if not ray.is_initialized():
            raise RuntimeError("the worker pool needs Ray: call ray.init() (or ray.init(address='auto')) first")
        self.config = config or PoolConfig()
        resources = ray.cluster_resources()
        self.uses_gpus = _requests_gpus(self.config, resources.get("GPU", 0))
        count = self.config.num_workers
        if count is None:
            if self.uses_gpus and not resources.get("GPU", 0):
                raise ValueError(
                    "num_workers: the cluster has no GPU yet (an autoscaling cluster at zero?): set how many GPU "
                    "workers to start (--workers N); the autoscaler adds nodes for them"
                )
            have = resources.get("GPU", 0) if self.uses_gpus else resources.get("CPU", 1)
            need = self.config.gpus_per_worker if self.uses_gpus else self.config.cpus_per_worker
            count = max(1, int(have // need))
        self._actor_class = ray.remote(worker_cls).options(
            num_gpus=self.config.gpus_per_worker if self.uses_gpus else 0,
            num_cpus=self.config.cpus_per_worker,
            max_restarts=0,  # a lost actor is replaced here, and its jobs resubmitted
        )
        self._init_args = init_args
        self.actors = [self._actor_class.remote(*init_args) for _ in range(count)]
        self.replaced = 0

    def _timeout(self, durations: list[float]) -> float | None:
        if self.config.job_timeout_s is not None:
            return self.config.job_timeout_s
        if len(durations) < 3:
            return None
        return max(ADAPTIVE_TIMEOUT_FLOOR_S, 20 * statistics.median(durations))

    def _replace(self, slot: int, actor: Any) -> None:
        if self.actors[slot] is actor:  # first news of this loss: replace the actor once
            self.actors[slot] = self._actor_class.remote(*self._init_args)
            self.replaced += 1

    def _lost(self, job: _Job, reason: str) -> Iterator[tuple[str, WorkerFailure]]:
        """Requeue a job whose worker was lost, or report it once the retry bound is spent."""
        if job.attempts <= self.config.max_retries:
            self._queue.appendleft(job)
        else:
            yield job.key, WorkerFailure(job.key, f"worker lost {job.attempts} times: {reason}", job.attempts)

    def map_unordered(self, method: str, jobs: Iterable[tuple[str, tuple]]) -> Iterator[tuple[str, Any]]:
        """Yield ``(key, result)`` as jobs finish; ``result`` is a ``WorkerFailure`` for a job that failed."""
        self._queue = queue = deque(_Job(key, args) for key, args in jobs)
        in_flight: dict[ray.ObjectRef, tuple[int, Any, _Job, float]] = {}
        load = [0] * len(self.actors)
        durations: list[float] = []
        while queue or in_flight:
            for slot, actor in enumerate(self.actors):
                while queue and load[slot] < self.config.max_in_flight:
                    job = queue.popleft()
                    job.attempts += 1
                    in_flight[getattr(actor, method).remote(*job.args)] = (slot, actor, job, time.monotonic())
                    load[slot] += 1
            done, _ = ray.wait(list(in_flight), num_returns=1, timeout=1.0)
            if not done:
                timeout, now = self._timeout(durations), time.monotonic()
                for ref in [r for r, v in in_flight.items() if timeout is not None and now - v[3] > timeout]:
                    slot, actor, job, _ = in_flight.pop(ref)
                    load[slot] -= 1
                    ray.kill(actor)  # its other jobs fail with RayActorError and are retried below
                    self._replace(slot, actor)
                    yield from self._lost(job, f"no answer in {timeout:.0f} s")
                continue
            slot, actor, job, submitted = in_flight.pop(done[0])
            load[slot] -= 1
            try:
                result = ray.get(done[0])
            except _WORKER_LOST as err:
                self._replace(slot, actor)
                yield from self._lost(job, type(err).__name__)
                continue
            except RayTaskError as err:  # the job itself raised (bad data, out of memory): report, don't retry
                yield job.key, WorkerFailure(job.key, str(err.cause if err.cause is not None else err), job.attempts)
                continue
            durations.append(time.monotonic() - submitted)
            yield job.key, result

    def shutdown(self) -> None:
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []


def run_into_store(
    pool: WorkerPool,
    method: str,
    jobs: list[tuple[str, tuple]],
    store,
    on_progress: Callable[[int, int], None] | None = None,
    flush_every: int | None = None,
) -> list[WorkerFailure]:
    """Run ``jobs`` on the pool, append each finished row to ``store`` as it arrives, shut the pool down.

    Failures are returned, never dropped; ``store.flush()`` runs every ``flush_every`` results and at the end.
    """
    failures: list[WorkerFailure] = []
    try:
        for done, (_, result) in enumerate(pool.map_unordered(method, jobs), start=1):
            if isinstance(result, WorkerFailure):
                failures.append(result)
            else:
                store.append(result)
            if on_progress is not None:
                on_progress(done, len(jobs))
            if flush_every and done % flush_every == 0:
                store.flush()
    finally:
        pool.shutdown()
        store.flush()
    return failures
