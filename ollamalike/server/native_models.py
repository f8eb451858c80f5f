"""Native model-management routes: /, /api/version, tags, show, create, copy, delete, blobs.

Handlers are thin: parse and type-check the body, call one ``library`` function, serialize.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from ollamalike import OLLAMA_VERSION, __version__, library
from ollamalike.config import is_loopback_host
from ollamalike.errors import BadRequest
from ollamalike.names import ModelName, parse_digest
from ollamalike.server.http import (
    collect_last,
    get_bool,
    get_str,
    json_response,
    model_field,
    read_json,
    stream_ndjson,
)
from ollamalike.server.security import bearer_token, key_matches
from ollamalike.server.state import get_state

_BLOB_CHUNK = 1024 * 1024


async def root(request: web.Request) -> web.Response:
    return web.Response(text="Ollama is running", content_type="text/plain")


async def version(request: web.Request) -> web.Response:
    # Clients gate features on this number by comparing it with Ollama releases, so it is the Ollama
    # version whose API we match (the one REQUIRES is checked against); our own is in a header.
    resp = json_response({"version": OLLAMA_VERSION})
    resp.headers["X-Ollamalike-Version"] = __version__
    return resp


async def tags(request: web.Request) -> web.Response:
    state = get_state(request)
    # In a thread: each entry's capabilities resolve the model (a first listing parses its GGUF).
    return json_response({"models": await asyncio.to_thread(library.list_models, state.store)})


async def show(request: web.Request) -> web.Response:
    body = await read_json(request)
    name = model_field(body)
    verbose = get_bool(body, "verbose", False)
    state = get_state(request)
    # In a thread: a verbose show re-reads the model's metadata, vocabulary included.
    return json_response(await asyncio.to_thread(library.show_model, state.store, name, verbose))


async def create(request: web.Request) -> web.StreamResponse:
    body = await read_json(request)
    name = model_field(body)
    stream = get_bool(body, "stream", True)
    create_request = library.CreateRequest.from_json(body)
    state = get_state(request)
    chunks = library.create_model(state.store, name, create_request, _create_access(request))
    if stream:
        return await stream_ndjson(request, chunks)
    return json_response(await collect_last(chunks))


def _create_access(request: web.Request) -> library.Access:
    """Server paths in a Modelfile only for a client on this machine, and with the admin key when keys
    are on (Ollama's rule: a remote client's files come through /api/blobs)."""
    config = get_state(request).config
    keys_on = bool(config.api_keys or config.admin_keys)
    local = is_loopback_host(request.remote)
    if local and keys_on:
        token = bearer_token(request)
        local = token is not None and bool(config.admin_keys) and key_matches(token, config.admin_keys)
    return library.Access(server_paths=local, keys_on=keys_on)


async def copy(request: web.Request) -> web.Response:
    body = await read_json(request)
    source = get_str(body, "source", required=True)
    destination = get_str(body, "destination", required=True)
    library.copy_model(get_state(request).store, source, destination)
    return web.Response(status=200)


async def delete(request: web.Request) -> web.Response:
    body = await read_json(request)
    name = model_field(body)
    state = get_state(request)
    library.delete_model(state.store, name)
    # A deleted model should not keep its memory until keep_alive runs out (Ollama unloads it too).
    await state.scheduler.unload(ModelName.parse(name).display)
    return web.Response(status=200)


def _digest(request: web.Request) -> str:
    return parse_digest(request.match_info["digest"])


async def head_blob(request: web.Request) -> web.Response:
    digest = _digest(request)
    status = 200 if get_state(request).store.has_blob(digest) else 404
    return web.Response(status=status)


async def upload_blob(request: web.Request) -> web.Response:
    digest = _digest(request)
    store = get_state(request).store
    if store.has_blob(digest):
        # Ollama answers 200 for a blob it already has. The body is read and dropped so that a
        # client still sending (the ollama library never asks HEAD first) gets a clean answer.
        async for _ in request.content.iter_chunked(_BLOB_CHUNK):
            pass
        return web.Response(status=200)
    if request.content_length is None and request.headers.get("Transfer-Encoding", "").lower() != "chunked":
        raise BadRequest("blob upload needs a Content-Length or chunked body")
    await store.add_blob_stream(request.content.iter_chunked(_BLOB_CHUNK), digest)
    return web.Response(status=201)


def setup(app: web.Application) -> None:
    app.router.add_get("/", root)  # aiohttp answers HEAD for GET routes
    app.router.add_get("/api/version", version)
    app.router.add_get("/api/tags", tags)
    app.router.add_post("/api/show", show)
    app.router.add_post("/api/create", create)
    app.router.add_post("/api/copy", copy)
    app.router.add_delete("/api/delete", delete)
    # ``.+`` so that a digest with slashes reaches validation (400) instead of routing (404).
    app.router.add_route("HEAD", "/api/blobs/{digest:.+}", head_blob)
    app.router.add_post("/api/blobs/{digest:.+}", upload_blob)
