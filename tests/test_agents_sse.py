"""Named-event SSE streaming (``server/sse.py``) on a real aiohttp server: an error before the first
chunk is still a proper HTTP error, an error after the headers becomes the API's own error event, and
the official SDKs raise that event as an error."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import pytest
from aiohttp import web

from ollamalike.errors import BadRequest, RunnerError
from ollamalike.server import anthropic_stream
from ollamalike.server.middleware import MIDDLEWARES
from ollamalike.server.responses_stream import ResponseObject, ResponseStream
from ollamalike.server.sse import stream_events
from tests.helpers import assert_anthropic_error


async def _chunks(fail_at: int) -> AsyncIterator[dict[str, Any]]:
    for i in range(3):
        if i == fail_at:
            raise RunnerError("the model runner died") if i else BadRequest("bad option")
        yield {"model": "m", "message": {"role": "assistant", "content": f"t{i} "}, "done": False}
    yield {"model": "m", "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop"}


async def messages(request: web.Request) -> web.StreamResponse:
    enc = anthropic_stream.MessageStream("m")
    return await stream_events(request, _chunks(int(request.query.get("fail", "9"))), enc.feed,
                               anthropic_stream.error_events, opening=enc.opening)


async def responses(request: web.Request) -> web.StreamResponse:
    enc = ResponseStream(ResponseObject("m", {}, None, True))
    return await stream_events(request, _chunks(int(request.query.get("fail", "9"))), enc.feed,
                               enc.error_events, opening=enc.opening)


@pytest.fixture
async def server(aiohttp_server: Any) -> Any:
    app = web.Application(middlewares=MIDDLEWARES)
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1/responses", responses)
    return await aiohttp_server(app)


def _events(text: str) -> list[tuple[str, str]]:
    out = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((lines["event"], lines["data"]))
    return out


async def test_error_before_the_first_chunk_is_an_http_error(server: Any) -> None:
    async with aiohttp.ClientSession() as session, session.post(server.make_url("/v1/messages?fail=0")) as resp:
        assert_anthropic_error(resp.status, await resp.text(), 400, "bad option")


async def test_error_mid_stream_is_an_error_event(server: Any) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(server.make_url("/v1/messages?fail=2")) as resp:
            assert resp.status == 200 and resp.content_type == "text/event-stream"
            events = _events(await resp.text())
        assert [n for n, _ in events][:2] == ["message_start", "ping"]
        name, data = events[-1]
        assert name == "error"
        assert_anthropic_error(500, json.loads(data), 500, "runner died")
        async with session.post(server.make_url("/v1/responses?fail=2")) as resp:
            events = _events(await resp.text())
        assert events[-1][0] == "error"
        body = json.loads(events[-1][1])
        assert body["type"] == "error" and body["code"] == "server_error" and "runner died" in body["message"]
        assert body["sequence_number"] == len(events) - 1


async def test_anthropic_sdk_raises_the_error_event(server: Any) -> None:
    client = anthropic.AsyncAnthropic(base_url=str(server.make_url("/")), api_key="x", max_retries=0,
                                      default_query={"fail": "2"})
    texts: list[str] = []
    with pytest.raises(anthropic.APIStatusError, match="runner died"):
        async with client.messages.stream(model="m", max_tokens=5, messages=[{"role": "user", "content": "hi"}]) as s:
            async for text in s.text_stream:
                texts.append(text)
    assert texts == ["t0 ", "t1 "]
