"""The OpenAI-compatible ``/v1`` routes: a translation layer over ``ollamalike.inference``.

Each handler translates the OpenAI body into the same request object the native API builds
(``openai_requests``), calls ``inference.chat`` / ``generate`` / ``embed`` — the one inference
path — and translates the Ollama-shaped chunks back (``openai_responses``). Streams are
server-sent events ending with ``data: [DONE]``. Errors are raised as ``OllamalikeError`` and
the middleware answers them in OpenAI's error shape.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from ollamalike.errors import ModelNotFound, OllamalikeError
from ollamalike.inference.chunks import Chunk
from ollamalike.names import ModelName
from ollamalike.server import openai_responses as out
from ollamalike.server import streaming
from ollamalike.server.http import json_response, read_json
from ollamalike.server.openai_requests import parse_chat_completion, parse_completion, parse_embedding
from ollamalike.server.state import get_state

log = logging.getLogger("ollamalike.server")


def _sse_error(e: OllamalikeError | None, message: str) -> dict[str, object]:
    return out.error_object(e.status if e is not None else 500, message, e)


async def stream_sse(
    request: web.Request,
    chunks: AsyncIterator[Chunk],
    encode: Callable[[streaming.Chunk], list[dict[str, object]]],
) -> web.StreamResponse:
    """Stream ``encode(chunk)`` events as SSE, then ``data: [DONE]``; an error after the headers is a
    final ``data: {"error": {...}}`` event, which the openai client raises as ``APIError``."""
    return await streaming.stream(request, chunks, streaming.sse(encode, _sse_error))


async def _collect(chunks: AsyncIterator[Chunk]) -> list[Chunk]:
    return [chunk async for chunk in chunks]


async def chat_completions(request: web.Request) -> web.StreamResponse:
    translation = parse_chat_completion(await read_json(request))
    req = translation.request
    chunks = get_state(request).inference.chat(req)
    if req.stream:
        encoder = out.ChatStream(req.model, translation.include_usage)
        return await stream_sse(request, chunks, encoder.feed)
    return json_response(out.chat_completion(req.model, await _collect(chunks)))


async def completions(request: web.Request) -> web.StreamResponse:
    translation = parse_completion(await read_json(request))
    req = translation.request
    chunks = get_state(request).inference.generate(req)
    if req.stream:
        encoder = out.CompletionStream(req.model, translation.include_usage)
        return await stream_sse(request, chunks, encoder.feed)
    return json_response(out.completion(req.model, await _collect(chunks)))


async def embeddings(request: web.Request) -> web.Response:
    translation = parse_embedding(await read_json(request))
    result = await get_state(request).inference.embed(translation.request)
    return json_response(out.embedding_list(translation.request.model, result, translation.encoding_format))


async def _models(request: web.Request) -> list[dict[str, object]]:
    from ollamalike import library

    # Catalog reads are blocking SQLite calls: keep them off the event loop.
    return await asyncio.to_thread(library.list_models, get_state(request).store)


async def list_models(request: web.Request) -> web.Response:
    return json_response({"object": "list", "data": [out.model_object(e) for e in await _models(request)]})


async def retrieve_model(request: web.Request) -> web.Response:
    wanted = request.match_info["model"]
    key = ModelName.parse(wanted).key()
    for entry in await _models(request):
        name = str(entry.get("name") or entry.get("model") or "")
        if ModelName.parse(name).key() == key:
            return json_response(dict(out.model_object(entry), id=wanted))
    raise ModelNotFound(wanted)


def setup(app: web.Application) -> None:
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_get("/v1/models", list_models)
    # Model names contain "/" (namespace/model, hf.co/user/repo): match the rest of the path.
    app.router.add_get("/v1/models/{model:.+}", retrieve_model)
