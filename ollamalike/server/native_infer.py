"""Native inference routes: /api/generate, /api/chat, /api/embed, /api/embeddings, /api/ps.

Only HTTP lives here: bodies are parsed into the inference request dataclasses, the inference
service does the work, and responses stream as NDJSON (or are joined when ``stream`` is false).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from ollamalike import inference
from ollamalike.inference import InferenceService
from ollamalike.inference.chunks import Chunk
from ollamalike.server.http import json_response, read_json, stream_ndjson
from ollamalike.server.state import get_state


def _service(request: web.Request) -> InferenceService:
    return get_state(request).inference


async def _respond(request: web.Request, stream: bool, chunks: AsyncIterator[Chunk]) -> web.StreamResponse:
    """NDJSON chunks, or with ``stream: false`` the chunks folded into one response."""
    if stream:
        return await stream_ndjson(request, chunks)
    return json_response(await inference.collect(chunks))


async def generate(request: web.Request) -> web.StreamResponse:
    req = inference.parse_generate_request(await read_json(request))
    return await _respond(request, req.stream, _service(request).generate(req))


async def chat(request: web.Request) -> web.StreamResponse:
    req = inference.parse_chat_request(await read_json(request))
    return await _respond(request, req.stream, _service(request).chat(req))


async def embed(request: web.Request) -> web.Response:
    req = inference.parse_embed_request(await read_json(request))
    return json_response(await _service(request).embed(req))


async def embeddings(request: web.Request) -> web.Response:
    """The legacy endpoint: one prompt in, ``{"embedding": [...]}`` out."""
    req = inference.parse_embeddings_request(await read_json(request))
    result = await _service(request).embed(req)
    vectors = result["embeddings"]
    return json_response({"embedding": vectors[0] if vectors else []})


async def ps(request: web.Request) -> web.Response:
    return json_response({"models": get_state(request).scheduler.ps()})


def setup(app: web.Application) -> None:
    app.router.add_post("/api/generate", generate)
    app.router.add_post("/api/chat", chat)
    app.router.add_post("/api/embed", embed)
    app.router.add_post("/api/embeddings", embeddings)
    app.router.add_get("/api/ps", ps)
