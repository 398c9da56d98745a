"""The ``serve`` command's settings: configs/serve.yaml read with Serve's schema, command-line overrides, and
deployment options that must name deployments the app has."""

from __future__ import annotations

import argparse
import importlib
import inspect
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from tuneahead_ray.serve import (
    HAPROXY_PORTS,
    SERVE_ENVIRONMENT,
    ServeConfig,
    apply_serve_environment,
    bind_app,
    build_app,
)
from tuneahead_ray.serve.cli import IMPORT_PATH, add_commands, serve_settings
from tuneahead_ray.yaml_config import ConfigError

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "configs" / "serve.yaml"


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["serve", "--config", str(SHIPPED), *argv])


def test_the_shipped_config_gives_the_service_its_settings() -> None:
    settings = serve_settings(parse())
    assert settings.config == ServeConfig(
        model_dir="default",
        token_env="TUNEAHEAD_TOKEN",
        max_rows=1000,
        max_body_bytes=1 << 20,
        data_root=Path("configs/data"),
    )
    assert (settings.http_options["host"], settings.http_options["port"]) == ("127.0.0.1", 8000)
    assert (settings.name, settings.route_prefix, settings.proxy_location) == ("tuneahead", "/", "HeadOnly")
    score, worker = settings.deployment_options["ScoreService"], settings.deployment_options["FeatureWorker"]
    assert score["autoscaling_config"]["target_ongoing_requests"] == 16 and score["max_ongoing_requests"] == 64
    assert worker["max_ongoing_requests"] == 1 and "name" not in worker


def test_the_default_predictor_is_served_when_no_model_dir_is_given(tmp_path, monkeypatch) -> None:
    import pyarrow.parquet as pq

    from tuneahead_ray.features import FEATURE_GROUPS
    from tuneahead_ray.predictor import CARD_FILE, FULL_GROUPS, default_corpus_path, default_predictor_dir, read_card
    from tuneahead_ray.predictor import _default as default_module

    small = tmp_path / "corpus.parquet"  # the shipped corpus's first rows: the same columns, trained in a second
    pq.write_table(pq.read_table(default_corpus_path()).slice(0, 120), small)
    monkeypatch.setattr(default_module, "default_corpus_path", lambda: small)
    monkeypatch.setenv("TUNEAHEAD_CACHE", str(tmp_path / "cache"))
    config = ServeConfig.model_validate({"token_env": "TUNEAHEAD_TOKEN"})
    assert config.model_dir == "default" == serve_settings(parse("--model-dir", "default")).config.model_dir
    resolved = config.resolved()  # trains the default predictor, as `screen` does, into the cache
    assert resolved.model_dir == default_predictor_dir(small) and (resolved.model_dir / CARD_FILE).is_file()
    card = read_card(resolved.model_dir)
    assert set(card.features) <= {n for g in FULL_GROUPS for n in FEATURE_GROUPS[g]}
    assert card.metrics["n_train"] == 120
    assert config.resolved().model_dir == resolved.model_dir  # cached: the same directory, not retrained
    assert ServeConfig(model_dir=tmp_path / "mine").resolved().model_dir == tmp_path / "mine"


def test_command_line_options_override_the_file(tmp_path) -> None:
    args = parse("--model-dir", str(tmp_path), "--port", "9001", "--host", "localhost", "--token-file", "tok.txt")
    settings = serve_settings(args)
    assert settings.config.model_dir == tmp_path
    assert (settings.config.token_file, settings.config.token_env) == (Path("tok.txt"), None)
    assert (settings.http_options["host"], settings.http_options["port"]) == ("localhost", 9001)
    assert serve_settings(parse("--token-env", "OTHER")).config.token_env == "OTHER"


def test_token_options_exclude_each_other() -> None:
    with pytest.raises(SystemExit):
        parse("--token-env", "A", "--token-file", "b")


def write_config(tmp_path: Path, edit) -> Path:
    config = yaml.safe_load(SHIPPED.read_text())
    edit(config)
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_config_without_this_app_or_with_bad_args_is_refused(tmp_path) -> None:
    other = write_config(tmp_path, lambda c: c["applications"][0].update(import_path="other.module:app"))
    with pytest.raises(ConfigError, match=f"expected one application with import_path {IMPORT_PATH}, got 0"):
        serve_settings(parse("--config", str(other)))
    bad = write_config(tmp_path, lambda c: c["applications"][0]["args"].update(max_rows=0))
    with pytest.raises(ValidationError, match="max_rows"):
        serve_settings(parse("--config", str(bad)))
    typo = write_config(tmp_path, lambda c: c["applications"][0]["args"].update(max_row=10))
    with pytest.raises(ValidationError, match="max_row\n  Extra inputs are not permitted"):
        serve_settings(parse("--config", str(typo)))


def test_options_for_a_deployment_the_app_lacks_are_refused(tmp_path) -> None:
    config = ServeConfig(model_dir=tmp_path)  # no data_root: no FeatureWorker
    with pytest.raises(ValueError, match=r"deployment\(s\) \['FeatureWorker'\] that this app does not have"):
        bind_app(config, {"FeatureWorker": {"num_replicas": 1}})
    assert bind_app(config, {"ScoreService": {"num_replicas": 2}}) is not None


def test_the_builder_takes_the_config_files_args(tmp_path) -> None:
    from ray import serve

    module, name = IMPORT_PATH.split(":")
    builder = getattr(importlib.import_module(module), name)
    assert builder is build_app and len(inspect.signature(builder).parameters) == 1  # what Serve requires
    assert isinstance(builder({"model_dir": str(tmp_path), "max_rows": 10}), serve.Application)
    with pytest.raises(ValidationError, match="max_rows"):
        builder({"model_dir": str(tmp_path), "max_rows": 0})


def test_the_serve_environment_fills_in_only_what_is_unset() -> None:
    environ = {"RAY_worker_niceness": "5", "PATH": "/bin"}
    in_effect = apply_serve_environment(environ, haproxy=False)
    assert environ == {**in_effect, "PATH": "/bin"}
    assert in_effect == {**SERVE_ENVIRONMENT, "RAY_worker_niceness": "5"}  # the user's value wins
    assert "RAY_SERVE_ENABLE_HA_PROXY" not in environ  # --no-haproxy: Serve's Python proxy


def test_haproxy_is_the_default_behind_the_guard_in_a_private_directory(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TUNEAHEAD_CACHE", str(tmp_path / "cache"))
    environ = {"RAY_SERVE_HAPROXY_STATS_PORT": "8404"}
    in_effect = apply_serve_environment(environ)
    assert in_effect["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    assert in_effect["RAY_SERVE_HAPROXY_STATS_PORT"] == "8404"  # the user's
    assert 0 < int(in_effect["RAY_SERVE_HAPROXY_METRICS_PORT"]) < 65536  # a free one, not Serve's fixed 9101
    assert set(HAPROXY_PORTS) <= set(in_effect)
    launcher = Path(in_effect["RAY_SERVE_HAPROXY_BINARY_PATH"])
    assert launcher.parent == tmp_path / "cache" / "haproxy-guard"  # not in /tmp, which may be mounted noexec
    assert launcher.parent.stat().st_mode & 0o777 == 0o700 and launcher.stat().st_mode & 0o777 == 0o700
    assert "_haproxy_guard.py" in launcher.read_text()
    private = Path(in_effect["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"])
    assert private.stat().st_mode & 0o777 == 0o700  # other users cannot reach the admin or metrics socket
    for name in ("RAY_SERVE_HAPROXY_CONFIG_FILE_LOC", "RAY_SERVE_HAPROXY_SOCKET_PATH"):
        assert Path(in_effect[name]).parent == private
    # Ray adds "/<56-character node id>/metrics.sock": the socket path must stay within the 107-byte limit.
    assert len(in_effect["RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH"]) + 57 <= 107
    assert apply_serve_environment({})["RAY_SERVE_HAPROXY_BINARY_PATH"] == str(launcher)  # written once, reused


def test_haproxy_choices_of_the_user_win_and_a_guard_that_cannot_start_falls_back(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TUNEAHEAD_CACHE", str(tmp_path / "cache"))
    own = {"RAY_SERVE_HAPROXY_BINARY_PATH": "/opt/haproxy"}
    assert apply_serve_environment(own)["RAY_SERVE_HAPROXY_BINARY_PATH"] == "/opt/haproxy"  # no guard around it
    assert "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC" not in own
    off = {"RAY_SERVE_ENABLE_HA_PROXY": "0"}
    assert "RAY_SERVE_HAPROXY_BINARY_PATH" not in apply_serve_environment(off)  # the Python proxy, as asked
    monkeypatch.setattr("tuneahead_ray.serve._environment.real_haproxy_binary", lambda: "/bin/false")
    assert "RAY_SERVE_ENABLE_HA_PROXY" not in apply_serve_environment({})  # fails `-v`: the Python proxy
    monkeypatch.setattr("tuneahead_ray.serve._environment.real_haproxy_binary", lambda: None)
    assert "RAY_SERVE_ENABLE_HA_PROXY" not in apply_serve_environment({})  # no binary (macOS): the Python proxy
