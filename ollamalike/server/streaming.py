"""One streaming skeleton for every API: NDJSON (native), server-sent events (OpenAI, Anthropic).

``stream(request, chunks, framing)`` awaits the first chunk before any header goes out, so an error
raised before output (unknown model, bad option) still becomes a proper 4xx through the middleware.
After that the status cannot change: an error becomes the framing's final error frame. The one
disconnect rule: a client that hangs up ends the stream quietly (logged, not an error), and the
chunk iterator is always closed, which cancels the sequence in the runner at once. A stream the
daemon cuts while shutting down (the drain timeout passed: ``server/health.py`` sets ``CUT_KEY`` on
the request, then cancels its task) ends with the framing's error frame naming the reason.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field

from aiohttp import web

from ollamalike.errors import OllamalikeError

log = logging.getLogger("ollamalike.server")

# A chunk of a stream (inference chunks, pull progress) and the objects framings write: JSON objects.
Chunk = Mapping[str, object]

# Set on a request just before its handler task is cancelled on purpose: the error to end it with.
CUT_KEY = web.RequestKey("stream_cut", OllamalikeError)


def dumps(obj: object) -> str:
    """Compact JSON, UTF-8 kept as is (as Go's encoder does)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def encode_json(obj: object) -> bytes:
    """``dumps`` as UTF-8 bytes. A lone surrogate (from a model's output, a file name) cannot be UTF-8:
    then the text is sent \\u-escaped (still valid JSON) instead of failing the response."""
    text = dumps(obj)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=True).encode("ascii")


@dataclass(frozen=True)
class Framing:
    """How a stream is written: each chunk as frames, an error frame, and what ends the stream.

    ``encode`` may hold state (an encoder's ``feed``); ``error`` gets the error raised mid-stream, or
    None for an unexpected exception, and the one-line message to send."""

    content_type: str
    encode: Callable[[Chunk], Iterable[bytes]]
    error: Callable[[OllamalikeError | None, str], bytes]
    end: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def ndjson(encode: Callable[[Chunk], Iterable[Chunk]] | None = None) -> Framing:
    """Native API streams: one JSON object per line; an error is ``{"error": message}``."""

    def frames(chunk: Chunk) -> Iterable[bytes]:
        for item in (encode(chunk) if encode else (chunk,)):
            yield encode_json(item) + b"\n"

    return Framing("application/x-ndjson", frames, lambda _e, message: encode_json({"error": message}) + b"\n")


def sse(encode: Callable[[Chunk], Iterable[Chunk]], error: Callable[[OllamalikeError | None, str], Chunk],
        end: bytes = b"data: [DONE]\n\n", event_names: bool = False) -> Framing:
    """Server-sent events of ``encode(chunk)``. With ``event_names`` each event's ``type`` is also
    its ``event:`` line (Anthropic's and the Responses API's streams)."""

    def frame(event: Chunk) -> bytes:
        head = f"event: {event['type']}\n" if event_names and isinstance(event.get("type"), str) else ""
        return head.encode() + b"data: " + encode_json(event) + b"\n\n"

    return Framing("text/event-stream", lambda chunk: (frame(e) for e in encode(chunk)),
                   lambda e, message: frame(error(e, message)), end,
                   {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _next(iterator: AsyncIterator[Chunk]) -> Chunk | None:
    try:
        return await iterator.__anext__()
    except StopAsyncIteration:
        return None


async def close_quietly(awaitable: Awaitable[object]) -> None:
    """Await a stream iterator's ``aclose()``; an error there is only logged (the response is done)."""
    try:
        await awaitable
    except Exception:
        log.debug("error closing stream iterator", exc_info=True)


async def stream(request: web.Request, chunks: AsyncIterator[Chunk], framing: Framing) -> web.StreamResponse:
    iterator = chunks.__aiter__()
    response: web.StreamResponse | None = None
    try:
        chunk = await _next(iterator)
        response = web.StreamResponse(status=200, headers={"Content-Type": framing.content_type, **framing.headers})
        await response.prepare(request)
        while chunk is not None:
            for frame in framing.encode(chunk):
                await response.write(frame)
            chunk = await _next(iterator)
        if framing.end:
            await response.write(framing.end)
    except asyncio.CancelledError:
        cut = request.get(CUT_KEY)
        if response is None or cut is None:
            raise
        _uncancel()
        log.warning("cut %s %s: %s", request.method, request.path, cut.message)
        await _write_error(request, response, framing.error(cut, cut.message))
    except ConnectionResetError:
        if response is None:
            raise
        log.info("client disconnected during %s %s", request.method, request.path)
        return response
    except OllamalikeError as e:
        if response is None:
            raise
        await _write_error(request, response, framing.error(e, e.message))
    except Exception as e:
        if response is None:
            raise
        log.exception("error while streaming %s %s", request.method, request.path)
        await _write_error(request, response, framing.error(None, f"internal error: {e or type(e).__name__}"))
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await asyncio.shield(close_quietly(aclose()))
    assert response is not None
    try:
        await response.write_eof()
    except ConnectionResetError:
        log.info("client disconnected at the end of %s %s", request.method, request.path)
    return response


def _uncancel() -> None:
    """The cancellation was ours and is handled: let the task await again (Python >= 3.11)."""
    task = asyncio.current_task()
    uncancel = getattr(task, "uncancel", None)
    if uncancel is not None:
        uncancel()


async def _write_error(request: web.Request, response: web.StreamResponse, frame: bytes) -> None:
    try:
        await response.write(frame)
    except ConnectionResetError:
        log.info("client disconnected during %s %s", request.method, request.path)
