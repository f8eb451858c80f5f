"""OpenAI's Responses API (``POST /v1/responses``): a translation over ``inference.chat``.

The body becomes the same ``ChatRequest`` the native API builds (``responses_requests``), chained
on the stored conversation of ``previous_response_id`` (``responses_store``; unknown -> 404),
runs through ``inference.chat`` (the one inference path), and the native chunks come back as a
``response`` object or its streaming events (``responses_stream``). A finished response is
stored (unless ``store`` is false) so that a follow-up can chain on it. Errors take OpenAI's
shape in the error middleware.
"""

from __future__ import annotations

from aiohttp import web

from ollamalike.server import responses_stream as out
from ollamalike.server.chunk_fields import Chunk
from ollamalike.server.http import json_response, read_json
from ollamalike.server.responses_requests import output_messages, parse_response_request, previous_id
from ollamalike.server.sse import Event, stream_events
from ollamalike.server.state import get_state


async def create_response(request: web.Request) -> web.StreamResponse:
    body = await read_json(request)
    state = get_state(request)
    store = state.responses
    previous = previous_id(body)
    history = store.get(previous) if previous else []
    translation = parse_response_request(body, history)
    req = translation.request
    obj = out.ResponseObject(req.model, translation.echo, previous, translation.store)
    chunks = state.inference.chat(req)

    def remember(text: str, thinking: str, calls: list[dict[str, object]]) -> None:
        if translation.store:
            store.put(obj.id, history + translation.input_messages + output_messages(text, thinking, calls))

    if req.stream:
        encoder = out.ResponseStream(obj)

        def feed(chunk: Chunk) -> list[Event]:
            events = encoder.feed(chunk)
            if chunk.get("done"):
                remember("".join(encoder.texts), "".join(encoder.thinking), encoder.calls)
            return events

        return await stream_events(request, chunks, feed, encoder.error_events, opening=encoder.opening)
    answer, text, thinking, calls = out.response(obj, [chunk async for chunk in chunks])
    remember(text, thinking, calls)
    return json_response(answer)


def setup(app: web.Application) -> None:
    app.router.add_post("/v1/responses", create_response)
