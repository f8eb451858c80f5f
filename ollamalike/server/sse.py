"""Named-event server-sent streams (``event: NAME`` / ``data: JSON``) for the agent APIs.

Anthropic's Messages API and OpenAI's Responses API both stream named events (unlike Chat
Completions' bare ``data:`` lines ending with ``[DONE]``). ``stream_events`` drives one request's
inference chunks through an encoder and writes its events; the first chunk is awaited before the
headers go out, so an unknown model or bad option is still a proper 4xx from the middleware.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from ollamalike.errors import InternalError, OllamalikeError
from ollamalike.server.http import close_quietly, dumps

log = logging.getLogger("ollamalike.server")

Event = tuple[str, dict[str, Any]]


def encode_event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {dumps(data)}\n\n".encode()


async def _next(iterator: AsyncIterator[dict[str, Any]]) -> dict[str, Any] | None:
    try:
        return await iterator.__anext__()
    except StopAsyncIteration:
        return None


async def stream_events(
    request: web.Request,
    chunks: AsyncIterator[dict[str, Any]],
    encode: Callable[[dict[str, Any]], list[Event]],
    on_error: Callable[[OllamalikeError], list[Event]],
    opening: Callable[[], list[Event]] | None = None,
) -> web.StreamResponse:
    """Stream ``opening()`` then ``encode(chunk)`` for every chunk; an error after the headers
    were sent becomes ``on_error(exc)`` events (the status can no longer change)."""
    iterator = chunks.__aiter__()
    response: web.StreamResponse | None = None
    try:
        first = await _next(iterator)
        response = web.StreamResponse(status=200, headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        })
        await response.prepare(request)
        for name, data in opening() if opening else []:
            await response.write(encode_event(name, data))
        chunk = first
        while chunk is not None:
            for name, data in encode(chunk):
                await response.write(encode_event(name, data))
            chunk = await _next(iterator)
    except OllamalikeError as e:
        if response is None:
            raise
        for name, data in on_error(e):
            await response.write(encode_event(name, data))
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception as e:
        if response is None:
            raise
        log.exception("error while streaming %s %s", request.method, request.path)
        for name, data in on_error(InternalError(f"internal error: {e}")):
            await response.write(encode_event(name, data))
    finally:
        # Closing the inference iterator cancels the sequence in the runner (client gone or error).
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await asyncio.shield(close_quietly(aclose()))
    await response.write_eof()
    return response
