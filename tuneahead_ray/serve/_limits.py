"""The request-size limit: an ASGI middleware that reads at most ``max_body_bytes`` of any body."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tuneahead_ray.serve._errors import error_response

__all__ = ["BodyLimitMiddleware"]


def _content_length(scope: Scope) -> bytes | None:
    return next((value for name, value in scope["headers"] if name == b"content-length"), None)


class BodyLimitMiddleware:
    """413 for a body over the limit, judged from Content-Length before reading and from the bytes actually
    received (a chunked or lying client cannot get past it); the accepted body is replayed to the app."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and not declared.strip().isdigit():
            await error_response(400, "bad_request", "Content-Length is not a number")(scope, receive, send)
            return
        if declared is not None and int(declared) > self.max_body_bytes:
            await self._too_large(scope, receive, send, f"Content-Length {int(declared)}")
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await self._too_large(scope, receive, send, f"more than {self.max_body_bytes} bytes received")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send, seen: str) -> None:
        detail = f"the request body is limited to {self.max_body_bytes} bytes ({seen})"
        await error_response(413, "payload_too_large", detail)(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields the buffered body once, then defers to the server (for disconnects)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed
