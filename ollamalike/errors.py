"""The one exception hierarchy. Every error carries the HTTP status the API answers with.

Handlers never build error responses themselves: middleware turns an ``OllamalikeError`` into
``{"error": message}`` (native API) or OpenAI's error object (``/v1``), and the CLI prints
``Error: message`` and exits non-zero.
"""

from __future__ import annotations


class OllamalikeError(Exception):
    """Base class. ``status`` is the HTTP status; ``message`` is shown to the user verbatim."""

    status: int = 500
    openai_type: str = "api_error"

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param  # the request field at fault, when there is one (OpenAI's error ``param``)

    def __str__(self) -> str:
        return self.message


class BadRequest(OllamalikeError):
    status = 400
    openai_type = "invalid_request_error"


class Unauthorized(OllamalikeError):
    status = 401
    openai_type = "authentication_error"


class Forbidden(OllamalikeError):
    status = 403
    openai_type = "permission_error"


class NotFound(OllamalikeError):
    status = 404
    openai_type = "invalid_request_error"


class ModelNotFound(NotFound):
    """The wording is Ollama's; clients match on it."""

    def __init__(self, name: str) -> None:
        super().__init__(f"model '{name}' not found")
        self.name = name


class Conflict(OllamalikeError):
    status = 409
    openai_type = "invalid_request_error"


class PayloadTooLarge(OllamalikeError):
    status = 413
    openai_type = "invalid_request_error"


class Overloaded(OllamalikeError):
    """Queue full or too many concurrent operations: the client may retry later."""

    status = 503
    openai_type = "server_error"


class InternalError(OllamalikeError):
    status = 500
    openai_type = "server_error"


class RunnerError(InternalError):
    """A runner process failed to load a model or died while serving a request."""


class RunnerDied(RunnerError):
    """The runner process is gone: it exited, or its socket no longer takes connections.

    A request that meets this before anything was sent to its client is retried once on a fresh
    runner (``inference/retry.py``)."""


class RegistryError(OllamalikeError):
    """A remote registry misbehaved (bad manifest, digest mismatch, HTTP error)."""

    status = 502
    openai_type = "server_error"


class EngineError(OllamalikeError):
    """A model's remote engine (its Modelfile ENGINE) failed, refused us or answered with garbage."""

    status = 502
    openai_type = "server_error"


class EngineUnavailable(EngineError):
    """A model's remote engine cannot be reached (refused, reset, busy): the client may retry later."""

    status = 503
