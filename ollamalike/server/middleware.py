"""Error middleware: every failure becomes the API's one JSON error shape.

``OllamalikeError`` -> its status with ``{"error": message}`` on native routes, OpenAI's
``{"error": {"message", "type", "param", "code"}}`` under ``/v1/`` and Anthropic's
``{"type": "error", "error": {"type", "message"}}`` under ``/v1/messages``. aiohttp's own 404/405/413
become the same shapes. Anything unexpected is logged with its traceback and answered with a
500; the daemon keeps serving.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from ollamalike.errors import ModelNotFound, OllamalikeError, Overloaded
from ollamalike.server import anthropic_stream
from ollamalike.server.http import json_response

log = logging.getLogger("ollamalike.server")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


def is_openai_path(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/")


def error_response(
    request: web.Request,
    status: int,
    message: str,
    openai_type: str | None = None,
    headers: dict[str, str] | None = None,
    openai_code: str | None = None,
    openai_param: str | None = None,
) -> web.Response:
    if anthropic_stream.is_anthropic_path(request.path):
        return json_response(anthropic_stream.error_body(status, message),
                             status=anthropic_stream.anthropic_status(status), headers=headers)
    if is_openai_path(request.path):
        kind = openai_type or _OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        error = {"message": message, "type": kind, "param": openai_param, "code": openai_code}
        body: dict[str, Any] = {"error": error}
        return json_response(body, status=status, headers=headers)
    return json_response({"error": message}, status=status, headers=headers)


def _http_exception_message(request: web.Request, exc: web.HTTPException) -> str:
    if exc.status == 404:
        return "404 page not found"
    if exc.status == 405:
        return f"method {request.method} not allowed for {request.path}"
    if exc.status == 413:
        return "request body too large"
    return exc.reason or f"HTTP {exc.status}"


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except OllamalikeError as e:
        if e.status >= 500:
            # An overloaded queue is expected under load and the client is told to retry: not an error.
            level = logging.WARNING if isinstance(e, Overloaded) else logging.ERROR
            log.log(level, "%s %s -> %d: %s", request.method, request.path, e.status, e.message)
        # OpenAI clients recognise an unknown model by this code.
        code = "model_not_found" if isinstance(e, ModelNotFound) else getattr(e, "openai_code", None)
        return error_response(request, e.status, e.message, e.openai_type, openai_code=code, openai_param=e.param)
    except web.HTTPException as e:
        # Redirects and successes raised as exceptions pass through untouched.
        if e.status < 400:
            raise
        headers = {"Allow": e.headers["Allow"]} if "Allow" in e.headers else None
        return error_response(request, e.status, _http_exception_message(request, e), headers=headers)
    except (ConnectionResetError, OSError) as e:
        # The client went away mid-response: nothing left to answer.
        if isinstance(e, ConnectionResetError) or request.transport is None or request.transport.is_closing():
            log.debug("client disconnected during %s %s", request.method, request.path)
            raise
        log.exception("unexpected error in %s %s", request.method, request.path)
        return error_response(request, 500, f"internal error: {e}")
    except Exception as e:
        log.exception("unexpected error in %s %s", request.method, request.path)
        return error_response(request, 500, f"internal error: {type(e).__name__}: {e}")


MIDDLEWARES: list[Middleware] = [error_middleware]
