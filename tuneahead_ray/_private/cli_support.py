"""Pieces shared by the sub-commands: Ray connection arguments and per-stage progress bars."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from tuneahead_ray._private.workers import PoolConfig, PoolConfigError, WorkerFailure

__all__ = ["StageBars", "add_ray_args", "init_ray", "pool_config", "print_failures", "quiet_ray_data", "run_bar"]


class StageBars:
    """One tqdm bar per pipeline stage, with counts and rates."""

    def __init__(self) -> None:
        self.bars: dict = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        from tqdm.auto import tqdm

        if stage not in self.bars:
            self.bars[stage] = tqdm(total=total, desc=stage, unit="item", file=sys.stderr, dynamic_ncols=True)
        bar = self.bars[stage]
        bar.update(done - bar.n)
        if done >= total:
            bar.close()


def run_bar(desc: str):
    """A tqdm bar for ``on_progress(done, total)`` callbacks whose total is known only once work starts."""
    from tqdm.auto import tqdm

    bar = tqdm(desc=desc, unit="run", file=sys.stderr, dynamic_ncols=True)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    return bar, progress


def quiet_ray_data() -> None:
    """Ray Data's per-dataset progress bars and log lines off the console (our stage bars report progress);
    its log file under the Ray session directory keeps everything."""
    import logging

    import ray.data

    for handler in logging.getLogger("ray.data").handlers:
        if not isinstance(handler, logging.FileHandler) and type(handler).__name__ != "SessionFileHandler":
            handler.setLevel(logging.ERROR)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False


def init_ray(args: argparse.Namespace) -> None:
    """Connect to ``--address`` (or the cluster of a Ray job, via ``RAY_ADDRESS``), else start a local Ray."""
    import ray

    if ray.is_initialized():
        quiet_ray_data()
        return
    address = args.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        # address="local": a new local Ray even when `ray start` left a cluster on this machine
        ray.init(
            address="local",
            num_cpus=args.num_cpus,
            num_gpus=args.num_gpus,
            include_dashboard=False,
            log_to_driver=False,
        )
    quiet_ray_data()


def add_ray_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", help="Ray cluster address (e.g. auto); default starts a local Ray")
    parser.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all)")
    parser.add_argument("--num-gpus", type=int, help="GPUs of the local Ray (default: detected)")
    parser.add_argument("--workers", type=int, help="probe actors (default: one per GPU, else per CPU)")
    parser.add_argument(
        "--gpus-per-worker",
        type=float,
        default=1.0,
        help="GPUs per probe worker: a fraction packs small models on one GPU, a whole number N > 1 shards a "
        "model larger than one GPU over N",
    )


#: The command-line flag of each PoolConfig field the Ray arguments set (``device`` is the grid's or ``--device``).
_POOL_FLAGS = {"num_workers": "--workers", "gpus_per_worker": "--gpus-per-worker"}


def pool_config(args: argparse.Namespace, device: str) -> PoolConfig:
    """The probe pool's sizing from the Ray arguments; a bad value is a ``ValueError`` naming its flag (call it
    before starting Ray, so that a typo costs nothing)."""
    try:
        return PoolConfig(num_workers=args.workers, gpus_per_worker=args.gpus_per_worker, device=device)
    except PoolConfigError as err:
        raise ValueError(
            "; ".join(f"{_POOL_FLAGS.get(name, name)}: {problem}" for name, problem in err.problems.items())
        ) from None


def print_failures(failures: Sequence[WorkerFailure]) -> int:
    """Each failed job on stderr; the command's exit status (1 when any failed, else 0)."""
    for failure in failures:
        print(f"failed: {failure.key}: {failure.error}", file=sys.stderr)
    return 1 if failures else 0
