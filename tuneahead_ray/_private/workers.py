"""A pool of stateful Ray actors (one per GPU, or per CPU slot) with backpressure, streaming results and retries.

Each actor is built once (it loads the base model once) and then serves many jobs. An actor takes jobs only once
its constructor has run, so an actor that cannot be placed (its node died, the cluster is smaller than it looked)
holds none. At most ``max_in_flight`` jobs wait on one actor; results stream back as they finish; a job whose
actor died under it is resubmitted to a replacement actor, up to ``max_retries`` times, and then reported as a
failure rather than lost.
"""

from __future__ import annotations

import logging
import math
import numbers
import re
import statistics
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import ray

__all__ = ["PoolConfig", "PoolConfigError", "WorkerFailure", "WorkerPool", "run_into_store"]

ADAPTIVE_TIMEOUT_FLOOR_S = 120.0
NO_WORKER_WARNING_S = 60.0
_log = logging.getLogger(__name__)


def _worker_lost_errors() -> tuple[type[Exception], ...]:
    """Ray's errors for an actor that died or cannot be reached (Ray is imported only once a pool runs, so that
    the workers themselves load and run without it)."""
    from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError, WorkerCrashedError

    return (RayActorError, ActorDiedError, ActorUnavailableError, WorkerCrashedError)


class PoolConfigError(ValueError):
    """Bad :class:`PoolConfig` values: ``problems`` maps each bad field to what is wrong with it (and its value)."""

    def __init__(self, problems: dict[str, str]) -> None:
        self.problems = problems
        super().__init__("PoolConfig: " + "; ".join(f"{name} {problem}" for name, problem in problems.items()))


_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def _number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _count(value: object, least: int, optional: bool = False) -> str | None:
    """What is wrong with a whole-number field (None: nothing)."""
    if optional and value is None:
        return None
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < least:
        return f"must be a whole number >= {least}" + (" (or None)" if optional else "")
    return None


def _gpu_share(value: object) -> str | None:
    """GPUs per worker: a fraction in (0, 1] packs workers on one GPU, a whole number > 1 shards a model."""
    if not _number(value) or not math.isfinite(value) or value <= 0 or (value > 1 and value != int(value)):
        return "must be a fraction in (0, 1] or a whole number of GPUs"
    return None


def _cpu_share(value: object, num_workers: int | None, use_gpus: bool | None) -> str | None:
    """CPUs per worker: >= 0, and > 0 when the pool counts its workers by the cluster's CPUs (it divides by it)."""
    if not _number(value) or not math.isfinite(value) or value < 0:
        return "must be a finite number >= 0"
    if value == 0 and num_workers is None and use_gpus is not True:
        return "must be > 0 unless num_workers is set (or use_gpus=True): CPU workers are counted by it"
    return None


def _flag(value: object) -> str | None:
    return None if value is None or isinstance(value, bool) else "must be None, True or False"


def _device(value: object) -> str | None:
    return None if isinstance(value, str) and _DEVICE.fullmatch(value) else "must be auto, cpu or cuda[:N]"


def _timeout(value: object) -> str | None:
    if value is not None and (not _number(value) or not value > 0):
        return "must be a positive number of seconds (or None: adaptive)"
    return None


@dataclass(frozen=True)
class PoolConfig:
    """How the pool sizes and places its actors.

    Checked when built (:class:`PoolConfigError`, a ``ValueError`` naming every bad field and its value):
    ``num_workers`` None or a whole number >= 1; ``gpus_per_worker`` a fraction in (0, 1] or a whole number;
    ``use_gpus`` None or a bool; ``cpus_per_worker`` finite and >= 0, and > 0 when the pool counts CPU workers
    itself (no ``num_workers``, ``use_gpus`` not True); ``max_in_flight`` a whole number >= 1 (0 would leave every
    job queued); ``max_retries`` a whole number >= 0; ``device`` auto, cpu or cuda[:N]; ``job_timeout_s`` None or
    > 0.
    """

    num_workers: int | None = None  # default: one per GPU in the cluster, else one per CPU
    # A fraction packs several small-model workers on one GPU; a whole number > 1 shards a model over that many.
    gpus_per_worker: float = 1.0
    # None: request GPUs when the cluster has some now or `device` asks for CUDA. True: request them even when
    # none is up yet, so that an autoscaling cluster scaling from zero sees the GPU demand and adds GPU nodes.
    use_gpus: bool | None = None
    cpus_per_worker: float = 1.0
    max_in_flight: int = 2  # jobs queued on one actor at a time (backpressure)
    # Resubmissions of a job whose actor died under it; also restarts of an actor that failed to start.
    max_retries: int = 2
    device: str = "auto"
    # A job unanswered this long counts as lost: its actor is killed and replaced and the job resubmitted (a
    # result can vanish without an error when a node dies). None: 20x the median job time once 3 jobs finished,
    # never under ADAPTIVE_TIMEOUT_FLOOR_S.
    job_timeout_s: float | None = None

    def __post_init__(self) -> None:
        """Every bad value at once, each naming its field and value (:class:`PoolConfigError`)."""
        problems = {
            name: problem
            for name, problem in (
                ("num_workers", _count(self.num_workers, 1, optional=True)),
                ("gpus_per_worker", _gpu_share(self.gpus_per_worker)),
                ("use_gpus", _flag(self.use_gpus)),
                ("cpus_per_worker", _cpu_share(self.cpus_per_worker, self.num_workers, self.use_gpus)),
                ("max_in_flight", _count(self.max_in_flight, 1)),
                ("max_retries", _count(self.max_retries, 0)),
                ("device", _device(self.device)),
                ("job_timeout_s", _timeout(self.job_timeout_s)),
            )
            if problem is not None
        }
        if problems:
            raise PoolConfigError(
                {name: f"{problem}, got {getattr(self, name)!r}" for name, problem in problems.items()}
            )

    @property
    def shards(self) -> int:
        """GPUs one worker's model is sharded over (1: it sits on one device)."""
        return int(self.gpus_per_worker) if self.gpus_per_worker > 1 else 1


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
        import ray

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
        self.actors: list[Any] = [None] * count
        self._ready = [False] * count  # whether the actor in a slot has run its constructor (it may take jobs)
        self._starting: dict[ray.ObjectRef, tuple[int, Any]] = {}  # ready pings of actors not yet started
        self._start_failures = [0] * count  # consecutive failed starts per slot
        self._retired: dict[int, str] = {}  # slots given up after too many failed starts, and why
        for slot in range(count):
            self._start(slot)
        self.replaced = 0

    def _timeout(self, durations: list[float]) -> float | None:
        if self.config.job_timeout_s is not None:
            return self.config.job_timeout_s
        if len(durations) < 3:
            return None
        return max(ADAPTIVE_TIMEOUT_FLOOR_S, 20 * statistics.median(durations))

    def _start(self, slot: int) -> None:
        """A new actor in ``slot``; it takes jobs once its ready ping answers."""
        actor = self._actor_class.remote(*self._init_args)
        self.actors[slot], self._ready[slot] = actor, False
        self._starting[actor.__ray_ready__.remote()] = (slot, actor)

    def _replace(self, slot: int, actor: Any) -> None:
        if self.actors[slot] is actor:  # first news of this loss: replace the actor once
            self._start(slot)
            self.replaced += 1

    def _started(self, ref: ray.ObjectRef) -> None:
        """Handle an answered ready ping: the actor takes jobs, or it is restarted, or its slot is given up."""
        import ray
        from ray.exceptions import RayTaskError

        slot, actor = self._starting.pop(ref)
        if self.actors[slot] is not actor:
            return  # already replaced
        try:
            ray.get(ref)
        except (*_worker_lost_errors(), RayTaskError) as err:
            self._start_failures[slot] += 1
            if self._start_failures[slot] > self.config.max_retries:
                text = str(err).strip()
                self._retired[slot] = text.splitlines()[-1] if text else type(err).__name__
            else:
                self._replace(slot, actor)
            return
        self._ready[slot], self._start_failures[slot] = True, 0

    def _lost(self, job: _Job, reason: str) -> Iterator[tuple[str, WorkerFailure]]:
        """Requeue a job whose worker was lost, or report it once the retry bound is spent."""
        if job.attempts <= self.config.max_retries:
            self._queue.appendleft(job)
        else:
            yield job.key, WorkerFailure(job.key, f"worker lost {job.attempts} times: {reason}", job.attempts)

    def map_unordered(self, method: str, jobs: Iterable[tuple[str, tuple]]) -> Iterator[tuple[str, Any]]:
        """Yield ``(key, result)`` as jobs finish; ``result`` is a ``WorkerFailure`` for a job that failed."""
        import ray
        from ray.exceptions import RayTaskError

        worker_lost = _worker_lost_errors()
        self._queue = queue = deque(_Job(key, args) for key, args in jobs)
        in_flight: dict[ray.ObjectRef, tuple[int, Any, _Job, float]] = {}
        load = [0] * len(self.actors)
        durations: list[float] = []
        waiting_since, warned = time.monotonic(), False
        while queue or in_flight:
            if queue and not in_flight and len(self._retired) == len(self.actors):
                reasons = "; ".join(sorted(set(self._retired.values())))
                while queue:
                    job = queue.popleft()
                    error = f"no worker could start ({self.config.max_retries + 1} tries each): {reasons}"
                    yield job.key, WorkerFailure(job.key, error, job.attempts)
                break
            for slot, actor in enumerate(self.actors):
                while self._ready[slot] and queue and load[slot] < self.config.max_in_flight:
                    job = queue.popleft()
                    job.attempts += 1
                    in_flight[getattr(actor, method).remote(*job.args)] = (slot, actor, job, time.monotonic())
                    load[slot] += 1
            if in_flight or not queue:
                waiting_since = time.monotonic()
            elif not warned and time.monotonic() - waiting_since > NO_WORKER_WARNING_S:
                warned = True
                _log.warning(
                    "no worker has started in %.0f s: waiting for the cluster to place %d actor(s) "
                    "(an autoscaler adds nodes for them; check `ray status`)",
                    NO_WORKER_WARNING_S,
                    len(self.actors),
                )
            done, _ = ray.wait([*in_flight, *self._starting], num_returns=1, timeout=1.0)
            if done and done[0] in self._starting:
                self._started(done[0])
                continue
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
            except worker_lost as err:
                self._replace(slot, actor)
                yield from self._lost(job, type(err).__name__)
                continue
            except RayTaskError as err:  # the job itself raised (bad data, out of memory): report, don't retry
                yield job.key, WorkerFailure(job.key, str(err.cause if err.cause is not None else err), job.attempts)
                continue
            durations.append(time.monotonic() - submitted)
            yield job.key, result

    def shutdown(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor)
        self.actors, self._ready, self._starting = [], [], {}


def run_into_store(
    pool: WorkerPool,
    method: str,
    jobs: list[tuple[str, tuple]],
    store,
    on_progress: Callable[[int, int], None] | None = None,
    flush_every: int | None = None,
    to_row: Callable[[str, Any], dict] | None = None,
    stop_when: Callable[[dict], bool] | None = None,
    shutdown: bool = True,
) -> list[WorkerFailure]:
    """Run ``jobs`` on the pool, append each finished row to ``store`` as it arrives, shut the pool down (unless
    ``shutdown=False``: a caller that runs several batches on it shuts it down itself).

    ``to_row(key, result)`` makes the stored row of a result (default: the result is the row); ``stop_when(row)``
    after a stored row ends the run early (jobs in flight are dropped). Failures are returned, never dropped;
    ``store.flush()`` runs every ``flush_every`` results and at the end.
    """
    failures: list[WorkerFailure] = []
    try:
        for done, (key, result) in enumerate(pool.map_unordered(method, jobs), start=1):
            row = None
            if isinstance(result, WorkerFailure):
                failures.append(result)
            else:
                row = to_row(key, result) if to_row is not None else result
                store.append(row)
            if on_progress is not None:
                on_progress(done, len(jobs))
            if flush_every and done % flush_every == 0:
                store.flush()
            if row is not None and stop_when is not None and stop_when(row):
                break
    finally:
        if shutdown:
            pool.shutdown()
        store.flush()
    return failures
