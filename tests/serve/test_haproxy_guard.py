"""The HAProxy guard: Ray's own HAProxy config template, hardened; the wrapper rewrites in place and execs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import jinja2
import pytest

from tuneahead_ray.serve import _haproxy_guard as guard

GUARD = Path(guard.__file__)


def _ray_config(frontend_host: str) -> str:
    """Ray 2.60's HAProxy config template, rendered with the settings that decide where it listens."""
    templates = pytest.importorskip("ray.serve._private.haproxy_templates", reason="a Ray without HAProxy ingress")
    environment = jinja2.Environment()
    environment.filters["haproxy_fmt"] = str
    config = SimpleNamespace(
        socket_path="/run/serve/admin.sock",
        stats_port=8404,
        stats_uri="/stats",
        metrics_port=9101,
        metrics_uri="/metrics",
        frontend_host=frontend_host,
        frontend_port=8000,
        log_target="127.0.0.1:514",
        maxconn=100,
        nbthread=1,
    )
    routes = SimpleNamespace(status=200, routes_content_type="application/json", routes_message="{}")
    text = environment.from_string(templates.HAPROXY_CONFIG_TEMPLATE).render(config=config, route_info=routes)
    return text if text.endswith("\n") else text + "\n"  # as Ray writes it


def _binds(text: str) -> list[str]:
    return [line.split()[1] for line in text.splitlines() if line.strip().startswith("bind ")]


@pytest.mark.parametrize("frontend_host", ["127.0.0.1", "0.0.0.0"])
def test_rays_template_listens_on_loopback_after_hardening_except_where_the_user_chose(frontend_host) -> None:
    original = _ray_config(frontend_host)
    assert sorted(guard.open_binds(original)) == ["bind *:8404", "bind :9101"]  # what Ray 2.60 opens by itself
    assert "mode 666 level admin" in original
    hardened = guard.harden_config(original)
    assert guard.open_binds(hardened) == []
    assert sorted(_binds(hardened)) == sorted([f"{frontend_host}:8000", "127.0.0.1:8404", "127.0.0.1:9101"])
    assert "stats socket /run/serve/admin.sock mode 600 level admin" in hardened
    assert guard.harden_config(hardened) == hardened  # a reload hardens an already hardened file to itself


def test_the_wrapper_rewrites_the_config_in_place_then_becomes_the_real_binary(tmp_path) -> None:
    config = tmp_path / "haproxy.cfg"
    config.write_text(_ray_config("127.0.0.1"))
    config.chmod(0o640)
    seen = tmp_path / "seen"
    fake = tmp_path / "haproxy"
    fake.write_text(f'#!/bin/sh\necho "$$ $@" > {seen}\ncat "$3" >> {seen}\n')
    fake.chmod(0o700)
    command = [sys.executable, "-I", "-S", str(GUARD), str(fake), "-db", "-f", str(config), "-sf", "7"]
    process = subprocess.Popen(command)
    assert process.wait(timeout=30) == 0
    first, *rest = seen.read_text().splitlines()
    assert first == f"{process.pid} -db -f {config} -sf 7"  # same process (exec), same arguments
    assert "\n".join(rest) + "\n" == config.read_text() == guard.harden_config(_ray_config("127.0.0.1"))
    assert config.stat().st_mode & 0o777 == 0o640
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".guard-")]


def test_the_wrapper_refuses_to_start_haproxy_on_a_config_it_cannot_close(tmp_path, monkeypatch) -> None:
    config = tmp_path / "haproxy.cfg"
    config.write_text("frontend x\n    bind :80\n")
    monkeypatch.setattr(guard, "harden_config", lambda text: text)  # as if a new Ray wrote binds it misses
    with pytest.raises(SystemExit, match="still binds all interfaces"):
        guard.main(["/bin/false", "-f", str(config)])
