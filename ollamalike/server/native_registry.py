"""Routes for moving models in and out: POST /api/pull, POST /api/push, POST /api/import, and
POST /api/catalog (ours: the models of a registry namespace, for ``pull --all-from``).

Each streams Ollama-style status lines as NDJSON (``stream: false`` gives only the final object).
Pulls run inside the daemon; at most ``config.max_concurrent_pulls`` transfers run at once;
a pull beyond that is refused with 503 (pushes wait their turn). ``/api/import`` registers an Ollama models directory on this machine.
A push counts as this machine's own request (``registry.policy``) when its client is on loopback.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from ollamalike.config import is_loopback_host
from ollamalike.errors import BadRequest, Overloaded
from ollamalike.registry.import_ollama import import_models
from ollamalike.registry.pull import pull_model
from ollamalike.registry.push import push_model
from ollamalike.server.http import (
    collect_last,
    get_bool,
    get_str,
    json_response,
    model_field,
    read_json,
    stream_ndjson,
)
from ollamalike.server.state import AppState, get_state


def _state(request: web.Request) -> AppState:
    return get_state(request)


def _limit(state: AppState) -> asyncio.Semaphore:
    return state.registry_transfers


async def _limited(sem: asyncio.Semaphore, make: Callable[[], AsyncIterator[dict[str, Any]]]) -> AsyncIterator[dict[str, Any]]:
    async with sem:
        gen = make()
        try:
            async for item in gen:
                yield item
        finally:
            await gen.aclose()  # type: ignore[attr-defined]


async def _respond(request: web.Request, stream: bool, chunks: AsyncIterator[dict[str, Any]]) -> web.StreamResponse:
    if stream:
        return await stream_ndjson(request, chunks)
    return json_response(await collect_last(chunks) or {"status": "success"})


async def _transfer_request(request: web.Request) -> tuple[AppState, str, bool, bool]:
    """The store's state, the model name and the ``insecure``/``stream`` flags of a pull or push."""
    body = await read_json(request)
    name = model_field(body)
    insecure = bool(get_bool(body, "insecure", False))
    stream = bool(get_bool(body, "stream", True))
    return _state(request), name, insecure, stream


async def pull(request: web.Request) -> web.StreamResponse:
    state, name, insecure, stream = await _transfer_request(request)
    sem = _limit(state)
    if sem.locked():
        limit = state.config.max_concurrent_pulls
        raise Overloaded(f"too many concurrent pulls (limit {limit}, OLLAMALIKE_MAX_CONCURRENT_PULLS); try again later")
    # Shared with /metrics (server/ops.py): pull_model adds each blob's downloaded bytes to it.
    stats = state.pull_stats
    chunks = _limited(sem, lambda: pull_model(state.store, state.config, name, insecure=insecure, stats=stats))
    return await _respond(request, stream, chunks)


async def push(request: web.Request) -> web.StreamResponse:
    state, name, insecure, stream = await _transfer_request(request)
    local = is_loopback_host(request.remote)
    chunks = _limited(
        _limit(state), lambda: push_model(state.store, state.config, name, insecure=insecure, local=local)
    )
    return await _respond(request, stream, chunks)


async def import_ollama(request: web.Request) -> web.StreamResponse:
    body = await read_json(request)
    path = get_str(body, "path")
    if not path:
        raise BadRequest("path is required")
    stream = bool(get_bool(body, "stream", True))
    state = _state(request)
    return await _respond(request, stream, import_models(state.store, path))


async def catalog(request: web.Request) -> web.Response:
    """``{"from": "host/namespace", "insecure": bool}`` -> ``{"models": ["host/namespace/model:tag", ...]}``."""
    from ollamalike.registry.catalog import list_models

    body = await read_json(request)
    source = get_str(body, "from")
    if not source:
        raise BadRequest("from is required (REGISTRY/NAMESPACE)")
    insecure = bool(get_bool(body, "insecure", False))
    return json_response({"models": await list_models(_state(request).config, source, insecure=insecure)})


def setup(app: web.Application) -> None:
    app.router.add_post("/api/pull", pull)
    app.router.add_post("/api/push", push)
    app.router.add_post("/api/import", import_ollama)
    app.router.add_post("/api/catalog", catalog)
