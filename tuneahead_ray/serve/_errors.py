"""Every failure as a JSON body ``{"error": <code>, "detail": <message>}``: bad input is a 4xx, never a 500."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

__all__ = ["ApiError", "error_response", "install_error_handlers", "validation_messages"]

logger = logging.getLogger(__name__)
_MAX_MESSAGES = 10


class ApiError(Exception):
    """A request the service refuses: HTTP ``status``, a stable ``error`` code and a human ``detail``."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail


def error_response(status: int, error: str, detail: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


def _location(loc: Sequence[str | int]) -> str:
    """``("body", "rows", 3, "lr")`` -> ``rows[3].lr``."""
    text = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "body"


def validation_messages(errors: Sequence[Mapping]) -> str:
    """Pydantic errors as ``where: what`` messages; the offending values are never echoed back."""
    messages = []
    for item in errors[:_MAX_MESSAGES]:
        where = _location(item["loc"])
        if item["type"] == "model_attributes_type" and where == "body":
            messages.append("body: expected a JSON object (send it with Content-Type: application/json)")
        else:
            messages.append(f"{where}: {item['msg']}")
    if len(errors) > _MAX_MESSAGES:
        messages.append(f"... and {len(errors) - _MAX_MESSAGES} more")
    return "; ".join(messages)


async def _on_api_error(_: Request, exc: ApiError) -> JSONResponse:
    return error_response(exc.status, exc.error, exc.detail)


async def _on_validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    malformed = next((e for e in errors if e["type"] == "json_invalid"), None)
    if malformed is not None:
        reason = malformed.get("ctx", {}).get("error", "invalid JSON")
        return error_response(400, "malformed_json", f"the body is not valid JSON: {reason}")
    return error_response(422, "invalid_request", validation_messages(errors))


async def _on_http_error(_: Request, exc: HTTPException) -> JSONResponse:
    code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_").replace("-", "_")
    return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", f"the server failed on this request ({type(exc).__name__})")


def install_error_handlers(app: FastAPI) -> None:
    """Route every exception to a JSON error body."""
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(HTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)
