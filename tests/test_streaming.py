"""server/streaming.py: the one skeleton behind NDJSON and SSE streams (errors, disconnects)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web

from ollamalike.errors import BadRequest, OllamalikeError
from ollamalike.server import streaming

FRAMINGS: dict[str, Callable[[], streaming.Framing]] = {
    "ndjson": streaming.ndjson,
    "sse": lambda: streaming.sse(lambda c: [c], lambda e, m: {"error": {"message": m}}),
}


def _app(framing: streaming.Framing, source: Callable[[], AsyncIterator[dict[str, Any]]]) -> web.Application:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await streaming.stream(request, source(), framing)

    app = web.Application()
    app.router.add_get("/", handler)
    return app


@pytest.mark.parametrize("kind", sorted(FRAMINGS))
async def test_a_client_that_hangs_up_closes_the_source(aiohttp_client: Any, kind: str) -> None:
    closed = asyncio.Event()

    async def endless() -> AsyncIterator[dict[str, Any]]:
        try:
            n = 0
            while True:
                n += 1
                yield {"n": n, "pad": "x" * 4096}
                await asyncio.sleep(0.001)
        finally:
            closed.set()

    client = await aiohttp_client(_app(FRAMINGS[kind](), endless))
    resp = await client.get("/")
    assert resp.status == 200
    await resp.content.readline()
    resp.close()  # hang up mid-stream
    await asyncio.wait_for(closed.wait(), 5)


@pytest.mark.parametrize("kind", sorted(FRAMINGS))
async def test_an_error_before_output_keeps_its_status(aiohttp_client: Any, kind: str) -> None:
    async def failing() -> AsyncIterator[dict[str, Any]]:
        raise BadRequest("bad option")
        yield {}  # pragma: no cover

    @web.middleware
    async def errors(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)
        except OllamalikeError as e:
            return web.json_response({"error": e.message}, status=e.status)

    app = _app(FRAMINGS[kind](), failing)
    app.middlewares.append(errors)
    client = await aiohttp_client(app)
    resp = await client.get("/")
    assert resp.status == 400 and (await resp.json()) == {"error": "bad option"}


@pytest.mark.parametrize("kind", sorted(FRAMINGS))
async def test_an_error_mid_stream_is_the_last_frame(aiohttp_client: Any, kind: str) -> None:
    async def half() -> AsyncIterator[dict[str, Any]]:
        yield {"n": 1}
        raise BadRequest("model ran out of context")

    client = await aiohttp_client(_app(FRAMINGS[kind](), half))
    resp = await client.get("/")
    body = (await resp.read()).decode()
    assert resp.status == 200
    lines = [ln.removeprefix("data: ") for ln in body.splitlines() if ln.strip()]
    assert json.loads(lines[0]) == {"n": 1}
    last = json.loads(lines[-1])
    assert last == ({"error": "model ran out of context"} if kind == "ndjson"
                    else {"error": {"message": "model ran out of context"}})
    # An error ends an SSE stream without [DONE]: clients must not take it for a complete answer.
    assert "[DONE]" not in body


async def test_sse_ends_with_done_and_names_events_when_asked(aiohttp_client: Any) -> None:
    async def two() -> AsyncIterator[dict[str, Any]]:
        yield {"type": "message_start"}
        yield {"type": "message_stop"}

    framing = streaming.sse(lambda c: [c], lambda e, m: {"type": "error"}, end=b"", event_names=True)
    client = await aiohttp_client(_app(framing, two))
    body = (await (await client.get("/")).read()).decode()
    assert body == ('event: message_start\ndata: {"type":"message_start"}\n\n'
                    'event: message_stop\ndata: {"type":"message_stop"}\n\n')
