"""Runs HAProxy for Ray Serve with its side doors closed: a wrapper that Ray starts instead of the HAProxy binary.

Ray 2.60's HAProxy config (``ray/serve/_private/haproxy_templates.py``) binds the stats page (``bind *:PORT``) and
the Prometheus exporter (``bind :PORT``) on every interface, without authentication, and opens the admin socket
with ``mode 666`` (any local user may reconfigure or stop the proxy). Ray calls its binary as
``BINARY -db -f CONFIG [...]`` and lets ``RAY_SERVE_HAPROXY_BINARY_PATH`` choose it, so this script, set there by
:func:`tuneahead_ray.serve.apply_serve_environment`, rewrites ``CONFIG`` in place and then ``exec``s the real
binary with the same arguments (same process, so Ray's pid and command-line checks still hold):

- a ``bind`` without an address (``:PORT``, ``*:PORT``: every interface, implicitly) listens on 127.0.0.1 instead;
  an explicit address (``http_options.host``, e.g. 0.0.0.0 chosen on purpose) is left as it is;
- the admin socket is created ``mode 600``.

Every reload goes through it again. Standard library only: Ray starts it as ``python -I -S`` for every HAProxy
start, so it must not import the package.

    python -I -S _haproxy_guard.py REAL_HAPROXY_BINARY -db -f CONFIG [...]
"""

from __future__ import annotations

import os
import re
import sys
import tempfile

LOOPBACK = "127.0.0.1"
#: ``bind`` with no address or ``*``: HAProxy listens on all interfaces.
_IMPLICIT_ALL_INTERFACES = re.compile(r"^(?P<indent>\s*bind\s+)\*?:(?P<rest>\d+.*)$", re.MULTILINE)
_STATS_SOCKET_MODE = re.compile(r"^(?P<head>\s*stats\s+socket\s+\S+.*?\bmode\s+)\d+", re.MULTILINE)


def harden_config(text: str) -> str:
    """``text`` with implicit all-interface binds moved to 127.0.0.1 and the admin socket made owner-only."""
    text = _IMPLICIT_ALL_INTERFACES.sub(rf"\g<indent>{LOOPBACK}:\g<rest>", text)
    return _STATS_SOCKET_MODE.sub(r"\g<head>600", text)


def open_binds(text: str) -> list[str]:
    """The ``bind`` lines of ``text`` that still listen on all interfaces implicitly (empty after hardening)."""
    return [match.group(0).strip() for match in _IMPLICIT_ALL_INTERFACES.finditer(text)]


def config_path(args: list[str]) -> str | None:
    """The file after ``-f`` in HAProxy's arguments, if any."""
    for index, arg in enumerate(args[:-1]):
        if arg == "-f":
            return args[index + 1]
    return None


def harden_file(path: str) -> None:
    """Rewrite the config at ``path`` in place (atomically, keeping its mode)."""
    with open(path, encoding="utf-8") as handle:
        original = handle.read()
    hardened = harden_config(original)
    still_open = open_binds(hardened)
    if still_open:
        raise SystemExit(f"haproxy guard: {path} still binds all interfaces: {still_open}")
    if hardened == original:
        return
    directory = os.path.dirname(path) or "."
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=".guard-")
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(hardened)
    os.chmod(temporary, os.stat(path).st_mode & 0o777)
    os.replace(temporary, path)


def main(argv: list[str]) -> None:
    """``argv`` = [real binary, HAProxy arguments...]: harden the config, then become the real HAProxy."""
    if not argv:
        raise SystemExit("usage: _haproxy_guard.py REAL_HAPROXY_BINARY [HAPROXY ARGS...]")
    binary, args = argv[0], argv[1:]
    path = config_path(args)
    if path is not None:
        harden_file(path)
    os.execv(binary, [binary, *args])


if __name__ == "__main__":
    main(sys.argv[1:])
