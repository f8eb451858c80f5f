"""Request-size limits enforced before a handler runs.

Compressed request bodies are refused (415): no Ollama or OpenAI client sends them, and a small
gzip body can inflate past any limit before a handler sees it. A declared ``Content-Length`` over
``config.max_body_bytes`` is refused at once (413) on every route except blob uploads, whose size
is the model file's and which stream to disk. Chunked bodies are bounded while read
(``server.http.read_body``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from ollamalike.config import Config
from ollamalike.errors import OllamalikeError, PayloadTooLarge

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class UnsupportedMediaType(OllamalikeError):
    status = 415
    openai_type = "invalid_request_error"


@web.middleware
async def limits_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    config: Config = request.app["config"]
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ("", "identity"):
        raise UnsupportedMediaType(f"unsupported Content-Encoding {encoding!r}: send the request body uncompressed")
    length = request.content_length
    if length is not None and length > config.max_body_bytes and not request.path.startswith("/api/blobs/"):
        raise PayloadTooLarge(f"request body too large: {length} bytes (limit {config.max_body_bytes})")
    return await handler(request)


MIDDLEWARES: list[Middleware] = [limits_middleware]
