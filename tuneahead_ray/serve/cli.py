"""``serve``: run the prediction service locally from a Serve config file, with command-line overrides.

The config file is the one ``serve run`` and ``serve deploy`` accept (validated with Serve's own schema); its
deployment options are applied the way Serve applies them, by deployment name. It starts its own local Ray, with
the environment of :data:`~tuneahead_ray.serve._environment.SERVE_ENVIRONMENT` (HAProxy in front of the
replicas), unless ``RAY_ADDRESS`` names a cluster to join.
"""

from __future__ import annotations

import argparse
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneahead_ray.serve._auth import load_token
from tuneahead_ray.serve._config import ServeConfig
from tuneahead_ray.serve._deployments import bind_app
from tuneahead_ray.serve._environment import apply_serve_environment
from tuneahead_ray.yaml_config import ConfigError, load_yaml_model

__all__ = ["IMPORT_PATH", "ServeSettings", "add_commands", "deploy", "serve_settings"]

#: How a Serve config file names this application's builder.
IMPORT_PATH = "tuneahead_ray.serve:build_app"
DEFAULT_CONFIG = Path("configs/serve.yaml")


@dataclass(frozen=True)
class ServeSettings:
    """Everything ``serve`` starts: HTTP options, the application's name and route, its config and options."""

    http_options: dict[str, Any]
    proxy_location: str
    name: str
    route_prefix: str | None
    config: ServeConfig
    deployment_options: dict[str, dict[str, Any]]


def _config_fields(args: argparse.Namespace, fields: dict[str, Any]) -> dict[str, Any]:
    """The file's builder ``args`` with the command line's overrides; a token option replaces both sources."""
    fields = dict(fields)
    if args.model_dir is not None:
        fields["model_dir"] = args.model_dir
    if args.token_env is not None or args.token_file is not None:
        fields.pop("token_env", None)
        fields.pop("token_file", None)
        fields.update({"token_env": args.token_env} if args.token_env else {"token_file": args.token_file})
    return fields


def serve_settings(args: argparse.Namespace) -> ServeSettings:
    """Read and validate ``args.config`` and apply the overrides; raises ``ValueError`` naming what is wrong."""
    from ray.serve.schema import ServeDeploySchema

    deploy = load_yaml_model(args.config, ServeDeploySchema)
    apps = [app for app in deploy.applications if app.import_path == IMPORT_PATH]
    if len(apps) != 1:
        raise ConfigError(f"{args.config}: expected one application with import_path {IMPORT_PATH}, got {len(apps)}")
    app = apps[0]
    config = ServeConfig.model_validate(_config_fields(args, app.args))
    http_options = deploy.http_options.model_dump()
    http_options.update({key: value for key, value in (("host", args.host), ("port", args.port)) if value})
    return ServeSettings(
        http_options=http_options,
        proxy_location=deploy.proxy_location.value,
        name=app.name,
        route_prefix=app.route_prefix,
        config=config,
        deployment_options={d.name: d.model_dump(exclude_unset=True, exclude={"name"}) for d in app.deployments},
    )


def deploy(application: Any, name: str, route_prefix: str | None) -> None:
    """Deploy and wait until it runs; a failed deployment raises with the exception each failed deployment
    reported (its status message ends with it), e.g. a tampered model file or a missing token."""
    from ray import serve

    try:
        serve.run(application, name=name, route_prefix=route_prefix)
    except RuntimeError as err:
        deployments = serve.status().applications[name].deployments
        causes = [
            f"  {name}: {status.message.strip().splitlines()[-1]}"
            for name, status in deployments.items()
            if status.status == "DEPLOY_FAILED" and status.message.strip()
        ]
        raise ConfigError("\n".join([str(err), *causes])) from None


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # `kill`, `docker stop`, systemd: shut Serve down and clean up as Ctrl-C does


def _cmd_serve(args: argparse.Namespace) -> int:
    import ray
    from ray import serve

    settings = serve_settings(args)
    load_token(settings.config)  # fail here, not in every replica, when the token is missing
    if settings.config.model_dir == "default":
        print(
            "the default predictor: trained on the shipped corpus of runs of the embedded model (the first time, "
            "~30 s; then cached); --model-dir DIR serves one trained on your own model's runs",
            flush=True,
        )
    config = settings.config.resolved()
    application = bind_app(config, settings.deployment_options)
    # Our own local Ray, started in the service's environment (Serve reads it when its processes start), unless
    # RAY_ADDRESS names a cluster to join: that cluster has the environment it was started with.
    address = os.environ.get("RAY_ADDRESS") or "local"
    environment = apply_serve_environment(haproxy=args.haproxy)
    if not ray.is_initialized():
        ray.init(address=address, num_cpus=args.num_cpus if address == "local" else None, include_dashboard=False)
    serve.start(http_options=settings.http_options, proxy_location=settings.proxy_location)
    host, port = settings.http_options["host"], settings.http_options["port"]
    try:
        deploy(application, settings.name, settings.route_prefix)
        print(f"serving {config.model_dir} on http://{host}:{port} (docs at /docs); Ctrl-C stops it")
        if address == "local":
            print("Ray environment: " + " ".join(f"{name}={value}" for name, value in environment.items()))
            if args.haproxy and environment.get("RAY_SERVE_ENABLE_HA_PROXY") != "1":
                print("HAProxy is missing or cannot start here (ray[serve] installs it on Linux): Serve's Python proxy")
        signal.signal(signal.SIGTERM, _stop_on_sigterm)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``serve`` on the main command's sub-parsers."""
    parser = subparsers.add_parser("serve", help="run the prediction service (Ray Serve + FastAPI) locally")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="Serve config file (serve run format)")
    parser.add_argument(
        "--model-dir",
        help="predictor directory written by `predictor train`, or `default` (overrides the file's model_dir; the "
        "shipped config serves the default predictor, trained on the shipped corpus and cached on first use)",
    )
    parser.add_argument("--host", help="address to listen on (overrides http_options.host; keep 127.0.0.1 locally)")
    parser.add_argument("--port", type=int, help="port to listen on (overrides http_options.port)")
    tokens = parser.add_mutually_exclusive_group()
    tokens.add_argument("--token-env", metavar="NAME", help="environment variable holding the bearer token")
    tokens.add_argument("--token-file", type=Path, metavar="FILE", help="file holding the bearer token")
    parser.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all)")
    parser.add_argument(
        "--haproxy",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="serve through HAProxy (direct ingress, ~5x less overhead per request than Serve's Python proxy; its "
        "stats page and exporter moved to 127.0.0.1); --no-haproxy: Serve's Python proxy (default: %(default)s)",
    )
    parser.set_defaults(func=_cmd_serve)
