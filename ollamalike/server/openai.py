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
from typing import Any

from aiohttp import web

from ollamalike import inference
from ollamalike.errors import ModelNotFound, OllamalikeError
from ollamalike.names import ModelName
from ollamalike.server import openai_responses as out
from ollamalike.server.http import close_quietly, dumps, json_response, read_json
from ollamalike.server.openai_requests import parse_chat_completion, parse_completion, parse_embedding
from ollamalike.server.state import get_state

log = logging.getLogger("ollamalike.server")


async def _first(iterator: AsyncIterator[dict[str, Any]]) -> dict[str, Any] | None:
    try:
        return await iterator.__anext__()
    except StopAsyncIteration:
        return None


async def stream_sse(
    request: web.Request,
    chunks: AsyncIterator[dict[str, Any]],
    encode: Callable[[dict[str, Any]], list[dict[str, Any]]],
) -> web.StreamResponse:
    """Stream ``encode(chunk)`` events as SSE, then ``data: [DONE]``.

    The first inference chunk is awaited before the headers go out, so an unknown model or a
    bad option still gets its proper 4xx through the middleware. An error after that becomes a
    final ``data: {"error": {...}}`` event, which the openai client raises as ``APIError``.
    """
    iterator = chunks.__aiter__()
    response: web.StreamResponse | None = None
    try:
        first = await _first(iterator)
        response = web.StreamResponse(status=200, headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        })
        await response.prepare(request)
        chunk = first
        while chunk is not None:
            for event in encode(chunk):
                await response.write(f"data: {dumps(event)}\n\n".encode())
            chunk = await _first(iterator)
        await response.write(b"data: [DONE]\n\n")
    except OllamalikeError as e:
        if response is None:
            raise
        await response.write(f"data: {dumps(out.error_object(e.status, e.message, e))}\n\n".encode())
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception as e:
        if response is None:
            raise
        log.exception("error while streaming %s %s", request.method, request.path)
        await response.write(f"data: {dumps(out.error_object(500, f'internal error: {e}'))}\n\n".encode())
    finally:
        # Closing the inference iterator cancels the sequence in the runner (client gone or error).
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await asyncio.shield(close_quietly(aclose()))
    await response.write_eof()
    return response


async def _collect(chunks: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    return [chunk async for chunk in chunks]


async def chat_completions(request: web.Request) -> web.StreamResponse:
    translation = parse_chat_completion(await read_json(request))
    req = translation.request
    chunks = inference.chat(get_state(request), req)
    if req.stream:
        encoder = out.ChatStream(req.model, translation.include_usage)
        return await stream_sse(request, chunks, encoder.feed)
    return json_response(out.chat_completion(req.model, await _collect(chunks)))


async def completions(request: web.Request) -> web.StreamResponse:
    translation = parse_completion(await read_json(request))
    req = translation.request
    chunks = inference.generate(get_state(request), req)
    if req.stream:
        encoder = out.CompletionStream(req.model, translation.include_usage)
        return await stream_sse(request, chunks, encoder.feed)
    return json_response(out.completion(req.model, await _collect(chunks)))


async def embeddings(request: web.Request) -> web.Response:
    translation = parse_embedding(await read_json(request))
    result = await inference.embed(get_state(request), translation.request)
    return json_response(out.embedding_list(translation.request.model, result, translation.encoding_format))


async def _models(request: web.Request) -> list[dict[str, Any]]:
    from ollamalike import library

    # Catalog reads are blocking SQLite calls: keep them off the event loop.
    entries: list[dict[str, Any]] = await asyncio.to_thread(library.list_models, get_state(request).store)
    return entries


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
