"""Anthropic's Messages API (``POST /v1/messages``, ``/v1/messages/count_tokens``): a translation.

The body becomes the same ``ChatRequest`` the native API builds (``anthropic_requests``), runs
through ``inference.chat`` (the one inference path), and the native chunks come back as a
``message`` or Anthropic's SSE events (``anthropic_stream``). Authentication is the daemon's
(``server/security.py`` accepts ``x-api-key`` as well as a bearer token); ``anthropic-version``
and ``anthropic-beta`` headers are accepted and ignored. Errors take Anthropic's shape in the
error middleware (``anthropic_stream.error_body``).
"""

from __future__ import annotations

from aiohttp import web

from ollamalike.server import anthropic_stream as out
from ollamalike.server.anthropic_requests import parse_messages
from ollamalike.server.http import json_response, read_json
from ollamalike.server.sse import stream_events
from ollamalike.server.state import get_state


async def messages(request: web.Request) -> web.StreamResponse:
    req = parse_messages(await read_json(request))
    chunks = get_state(request).inference.chat(req)
    if req.stream:
        encoder = out.MessageStream(req.model)
        return await stream_events(request, chunks, encoder.feed, out.error_events, opening=encoder.opening)
    return json_response(out.message(req.model, [chunk async for chunk in chunks]))


async def count_tokens(request: web.Request) -> web.Response:
    req = parse_messages(await read_json(request), count_only=True)
    return json_response({"input_tokens": await get_state(request).inference.count_chat_tokens(req)})


def setup(app: web.Application) -> None:
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1/messages/count_tokens", count_tokens)
