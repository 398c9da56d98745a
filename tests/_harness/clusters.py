"""Local Ray clusters for tests and benchmarks, each kept apart from every other Ray on this machine and torn down
whatever happens (a failure, a timeout, pytest-timeout interrupting the test).

* ``isolated_process`` / ``run_isolated``: a command in its own process group with its own ``RAY_TMPDIR`` (its own
  Ray session directory and address file, so nothing else connects to what it starts, and it connects to nothing
  else). At the end the group is killed, then every process still running under that ``RAY_TMPDIR`` (a Ray it
  started that left the group), and the directory is removed.
* ``local_cluster``: a multi-node ``ray.cluster_utils.Cluster`` in this process, with a CPU-less head whose
  dashboard is on a free port; the driver connected to it; Ray and the cluster shut down at the end. Run it inside
  an isolated process (its nodes are local raylets sharing this process's ``RAY_TMPDIR``).
* ``ray_start_head``: ``ray start --head --block`` on 127.0.0.1 with every port free, in an isolated process;
  yields the dashboard address (for ``ray job submit``) once it answers.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests._harness.ports import free_port

__all__ = [
    "REPO",
    "Isolated",
    "IsolatedRun",
    "autoscaler_errors",
    "isolated_env",
    "isolated_process",
    "kill_process_group",
    "local_cluster",
    "ray_start_head",
    "run_isolated",
]

REPO = Path(__file__).resolve().parents[2]


def isolated_env(ray_tmp: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment for a child with its own Ray temp dir: ``RAY_TMPDIR`` set, no ``RAY_ADDRESS``
    (nor the state API's), the repository on ``PYTHONPATH`` (for ``tests._harness``), plus ``extra``."""
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp), "PYTHONPATH": pythonpath, **(extra or {})}
    for variable in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
        env.pop(variable, None)
    return env


def kill_process_group(process: subprocess.Popen, wait_s: float = 30) -> None:
    """SIGKILL ``process``'s process group (it was started with ``start_new_session=True``) while its leader runs,
    and reap the leader. (Once the leader is reaped its id may name another group: not touched then.)"""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=wait_s)


def _kill_processes_under(directory: Path, wait_s: float = 10) -> None:
    """SIGKILL every process of this user that runs with ``RAY_TMPDIR=directory`` or names ``directory`` on its
    command line (a unique temp dir: the processes of one isolated run, wherever their process group)."""
    import psutil

    marker, me = str(directory), os.getpid()
    found = []
    for proc in psutil.process_iter(["cmdline", "environ"], ad_value=None):
        cmdline, environ = proc.info["cmdline"] or (), proc.info["environ"] or {}
        if proc.pid != me and (environ.get("RAY_TMPDIR") == marker or any(marker in part for part in cmdline)):
            with contextlib.suppress(psutil.Error):
                proc.kill()
                found.append(proc)
    psutil.wait_procs(found, timeout=wait_s)


def autoscaler_errors(ray_tmp: Path) -> str:
    """The end of the autoscaler's error log under ``ray_tmp``, when there is one (a bad cluster config shows up
    only there); empty otherwise."""
    logs = sorted(ray_tmp.glob("ray/session_*/logs/monitor.err"))
    text = logs[-1].read_text(encoding="utf-8", errors="replace").strip() if logs else ""
    return f"\nmonitor.err:\n{text[-3000:]}" if text else ""


@dataclass(frozen=True)
class Isolated:
    """A running isolated process and its Ray temp dir."""

    process: subprocess.Popen
    ray_tmp: Path


@contextlib.contextmanager
def isolated_process(
    command: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path = REPO,
    stdout: Any = subprocess.DEVNULL,
    prefix: str = "ta-",
) -> Iterator[Isolated]:
    """Start ``command`` in a new session with its own ``RAY_TMPDIR`` (``env`` added to the environment) and yield
    it; on leaving, however it is left, kill its process group and every process under its Ray temp dir, and
    remove that dir. stdout is ``stdout`` (``subprocess.PIPE`` to read it), stderr goes with it."""
    # Short on purpose: Ray's Unix socket paths under it must fit in 107 bytes.
    ray_tmp = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        process = subprocess.Popen(
            list(command), env=isolated_env(ray_tmp, env), cwd=cwd, stdout=stdout, stderr=subprocess.STDOUT,
            text=True, errors="replace", start_new_session=True,
        )  # fmt: skip
        try:
            yield Isolated(process, ray_tmp)
        finally:
            kill_process_group(process)
            _kill_processes_under(ray_tmp)
            if process.stdout is not None:
                process.stdout.close()
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


@dataclass(frozen=True)
class IsolatedRun:
    """How an isolated command ended: its exit status, its output (stdout and stderr), whether it was killed at
    its deadline, and the autoscaler's errors if it ran one."""

    returncode: int | None
    output: str
    timed_out: bool
    autoscaler_errors: str = ""

    def tail(self, chars: int = 4000) -> str:
        """The end of the output, with why it was killed and the autoscaler's errors: for a failure message."""
        killed = "\n(killed at its deadline)" if self.timed_out else ""
        return f"{self.output[-chars:]}{killed}{self.autoscaler_errors}"


def run_isolated(
    command: Sequence[str], *, timeout_s: float, env: Mapping[str, str] | None = None, cwd: Path = REPO
) -> IsolatedRun:
    """Run ``command`` as ``isolated_process`` does, to its end or for at most ``timeout_s`` (then it is killed);
    whatever it started is gone when this returns or raises. Keep ``timeout_s`` below the test's timeout."""
    with isolated_process(command, env=env, cwd=cwd, stdout=subprocess.PIPE) as isolated:
        process = isolated.process
        try:
            output, _ = process.communicate(timeout=timeout_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
            kill_process_group(process)
            _kill_processes_under(isolated.ray_tmp)
            try:
                output, _ = process.communicate(timeout=30)  # what it wrote before the kill
            except subprocess.TimeoutExpired:
                output = "(no output: something still holds its stdout)"
        errors = autoscaler_errors(isolated.ray_tmp)
    return IsolatedRun(process.returncode, output or "", timed_out, errors)


@contextlib.contextmanager
def _environ(variables: Mapping[str, str]) -> Iterator[None]:
    """``variables`` set in this process's environment inside the block, the previous values back after it."""
    previous = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def local_cluster(
    workers: Sequence[Mapping[str, Any]] = (),
    *,
    head: Mapping[str, Any] | None = None,
    head_env: Mapping[str, str] | None = None,
    connect: bool = True,
) -> Iterator[Any]:
    """A ``ray.cluster_utils.Cluster`` in this process: a head with no CPUs and its dashboard on a free port
    (``head`` adds to or overrides its node arguments; ``head_env`` is the environment its processes start in),
    one worker node per entry of ``workers`` (``add_node`` arguments, e.g. ``{"num_cpus": 1, "num_gpus": 1}``),
    and this driver connected (``connect``). Ray and every node are shut down on leaving, however it is left."""
    import ray
    from ray.cluster_utils import Cluster

    head_args = {"num_cpus": 0, "include_dashboard": True, "dashboard_port": free_port(), **(head or {})}
    with _environ(head_env or {}):
        cluster = Cluster(initialize_head=True, head_node_args=head_args)
    try:
        for node_args in workers:
            cluster.add_node(**node_args)
        if workers:
            cluster.wait_for_nodes()
        if connect:
            ray.init(address=cluster.address, log_to_driver=False)
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


def _answers(address: str) -> bool:
    try:
        listed = subprocess.run(["ray", "job", "list", "--address", address], capture_output=True, timeout=60)
    except subprocess.TimeoutExpired:
        return False
    return listed.returncode == 0


@contextlib.contextmanager
def ray_start_head(*, num_cpus: int = 2, ready_timeout_s: float = 120, stop_timeout_s: float = 30) -> Iterator[str]:
    """``ray start --head --block`` on 127.0.0.1, every port a free one (other Ray instances on this machine hold
    the defaults), in an isolated process; yields its dashboard address (``http://127.0.0.1:PORT``) once
    ``ray job list`` answers there (at most ``ready_timeout_s``). Stopped on leaving: SIGTERM (``--block`` stops
    the processes it started), then SIGKILL of whatever is left after ``stop_timeout_s``."""
    gcs, dashboard, agent, agent_grpc, runtime_env, metrics = (free_port() for _ in range(6))
    command = [
        "ray", "start", "--head", "--block",
        "--port", str(gcs),
        "--node-ip-address", "127.0.0.1",
        "--dashboard-host", "127.0.0.1",
        "--dashboard-port", str(dashboard),
        "--num-cpus", str(num_cpus),
        "--include-dashboard", "true",
        "--dashboard-agent-listen-port", str(agent),
        "--dashboard-agent-grpc-port", str(agent_grpc),
        "--runtime-env-agent-port", str(runtime_env),
        "--metrics-export-port", str(metrics),
    ]  # fmt: skip
    address = f"http://127.0.0.1:{dashboard}"
    with isolated_process(command, prefix="th-") as isolated:
        head = isolated.process
        try:
            deadline = time.monotonic() + ready_timeout_s
            while not _answers(address):
                if head.poll() is not None:
                    raise RuntimeError(f"`ray start --head` exited with {head.returncode} before it answered")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the Ray head did not answer at {address} within {ready_timeout_s:.0f} s")
                time.sleep(1)
            yield address
        finally:
            head.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                head.wait(timeout=stop_timeout_s)
