"""Bearer-token authentication: the token's source, and an ASGI middleware that checks every route but health."""

from __future__ import annotations

import hmac
import os

from starlette.types import ASGIApp, Receive, Scope, Send

from tuneahead_ray.serve._config import ServeConfig
from tuneahead_ray.serve._errors import error_response

__all__ = ["PUBLIC_PATHS", "BearerAuthMiddleware", "load_token"]

#: Routes that answer without a token (a load balancer's health probe has none).
PUBLIC_PATHS = frozenset({"/healthz"})


def load_token(config: ServeConfig) -> str | None:
    """The configured bearer token, or None when authentication is off.

    A configured source that is unset, unreadable or empty raises: a service told to authenticate must not
    start open.
    """
    if config.token_env is not None:
        token = os.environ.get(config.token_env, "").strip()
        if not token:
            raise ValueError(f"token_env: environment variable {config.token_env} is unset or empty")
        return token
    if config.token_file is not None:
        try:
            token = config.token_file.read_text(encoding="utf-8").strip()
        except OSError as err:
            raise ValueError(f"token_file: cannot read {config.token_file}: {err.strerror}") from None
        if not token:
            raise ValueError(f"token_file: {config.token_file} is empty")
        return token
    return None


def _route_path(scope: Scope) -> str:
    """The path below the app's mount point (Serve mounts an application at its route prefix)."""
    path, root = scope["path"], scope.get("root_path", "")
    return (path[len(root) :] or "/") if root and path.startswith(root) else path


def _bearer(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, credentials = value.partition(b" ")
            return credentials.strip() if scheme.lower() == b"bearer" else None
    return None


class BearerAuthMiddleware:
    """Answers 401 unless the request carries ``Authorization: Bearer <token>`` (constant-time comparison)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode("utf-8")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _route_path(scope) in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        presented = _bearer(scope)
        if presented is None:
            detail = "missing bearer token: send 'Authorization: Bearer <token>'"
        elif not hmac.compare_digest(presented, self.token):
            detail = "invalid bearer token"
        else:
            await self.app(scope, receive, send)
            return
        response = error_response(401, "unauthorized", detail, headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)
