"""Named-event server-sent streams (``event: NAME`` / ``data: JSON``) for the agent APIs.

Anthropic's Messages API and OpenAI's Responses API both stream named events (unlike Chat
Completions' bare ``data:`` lines ending with ``[DONE]``). ``stream_events`` drives one request's
inference chunks through an encoder and writes its events; the first chunk is awaited before the
headers go out, so an unknown model or bad option is still a proper 4xx from the middleware.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping

from aiohttp import web

from ollamalike.errors import InternalError, OllamalikeError
from ollamalike.server import streaming

Event = tuple[str, Mapping[str, object]]


def encode_event(name: str, data: Mapping[str, object]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + streaming.encode_json(data) + b"\n\n"


async def stream_events(
    request: web.Request,
    chunks: AsyncIterator[streaming.Chunk],
    encode: Callable[[streaming.Chunk], list[Event]],
    on_error: Callable[[OllamalikeError], list[Event]],
    opening: Callable[[], list[Event]] | None = None,
) -> web.StreamResponse:
    """Stream ``opening()`` then ``encode(chunk)`` for every chunk; an error after the headers
    were sent becomes ``on_error(exc)`` events (the status can no longer change). Errors before
    output, disconnects and closing the source follow ``server/streaming.py``, the one skeleton."""
    opened = opening is None

    def frames(chunk: streaming.Chunk) -> list[bytes]:
        nonlocal opened
        events = [] if opened else list(opening() if opening else [])
        opened = True
        return [encode_event(name, data) for name, data in [*events, *encode(chunk)]]

    def error(exc: OllamalikeError | None, message: str) -> bytes:
        return b"".join(encode_event(name, data) for name, data in on_error(exc or InternalError(message)))

    return await streaming.stream(request, chunks, streaming.Framing("text/event-stream", frames, error, b"", {
        "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}))
