"""Unit tests of the /v1 route layer on the real aiohttp app, with the app's ``InferenceService``
replaced by a scripted stand-in: SSE framing, [DONE], errors before and after the stream starts, and that the
handlers pass the translated request to inference. The real path is covered by test_openai_e2e.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from ollamalike.config import load_config
from ollamalike.errors import ModelNotFound, Overloaded, RunnerError
from ollamalike.server.app import make_app
from tests.helpers import ANY_PARAM, assert_openai_error

Script = list[dict[str, Any] | Exception]


class FakeInference:
    """Records requests and replays a script of chunks (an Exception entry is raised there)."""

    def __init__(self) -> None:
        self.requests: list[Any] = []
        self.script: Script = []
        self.closed = False

    async def _run(self, req: Any) -> AsyncIterator[dict[str, Any]]:
        self.requests.append(req)
        try:
            for item in self.script:
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            self.closed = True

    def chat(self, req: Any) -> AsyncIterator[dict[str, Any]]:
        return self._run(req)

    def generate(self, req: Any) -> AsyncIterator[dict[str, Any]]:
        return self._run(req)

    async def embed(self, req: Any) -> dict[str, Any]:
        self.requests.append(req)
        for item in self.script:
            if isinstance(item, Exception):
                raise item
        return {"model": req.model, "embeddings": [[1.0, 0.0]] * len(req.input), "prompt_eval_count": 4}


@pytest.fixture
def fake() -> FakeInference:
    return FakeInference()


@pytest.fixture
async def client(aiohttp_client: Any, fake: FakeInference) -> TestClient:
    client: TestClient = await aiohttp_client(make_app(load_config()))
    # The handlers reach inference only through the app state's service: the fake stands in for it.
    client.server.app["state"].inference = fake
    return client


def msg(text: str, done: bool = False, **extra: Any) -> dict[str, Any]:
    return {"model": "m", "message": {"role": "assistant", "content": text}, "done": done, **extra}


def sse_events(raw: str) -> list[str]:
    assert raw.endswith("\n\n"), raw
    events = raw.split("\n\n")[:-1]
    assert all(e.startswith("data: ") for e in events), events
    return [e[len("data: "):] for e in events]


async def test_chat_stream_sse_framing(client: TestClient, fake: FakeInference) -> None:
    fake.script = [msg("Hel"), msg("lo"), msg("", True, done_reason="stop", prompt_eval_count=5, eval_count=2)]
    body = {"model": "m", "stream": True, "stream_options": {"include_usage": True}, "max_tokens": 4,
            "messages": [{"role": "user", "content": "hi"}]}
    resp = await client.post("/v1/chat/completions", json=body)
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    events = sse_events(await resp.text())
    assert events[-1] == "[DONE]"
    objs = [json.loads(e) for e in events[:-1]]
    assert [o["choices"][0]["delta"].get("content") for o in objs[:2]] == ["Hel", "lo"]
    assert objs[2]["choices"][0]["finish_reason"] == "stop"
    assert objs[3]["choices"] == [] and objs[3]["usage"]["total_tokens"] == 7
    (req,) = fake.requests
    assert req.options == {"num_predict": 4} and req.messages == [{"role": "user", "content": "hi"}]


async def test_chat_non_stream(client: TestClient, fake: FakeInference) -> None:
    fake.script = [msg("ok"), msg("", True, done_reason="length", prompt_eval_count=1, eval_count=1)]
    resp = await client.post("/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert resp.status == 200
    data = await resp.json()
    assert data["choices"][0]["message"]["content"] == "ok"
    assert data["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize("stream", [True, False])
async def test_error_before_first_chunk_keeps_its_status(client: TestClient, fake: FakeInference, stream: bool) -> None:
    fake.script = [ModelNotFound("nope")]
    resp = await client.post("/v1/chat/completions",
                             json={"model": "nope", "stream": stream, "messages": [{"role": "user", "content": "x"}]})
    body = await resp.json()
    assert_openai_error(resp.status, body, 404, "not found")
    assert body["error"]["code"] == "model_not_found"
    fake.script = [Overloaded("server busy, please try again later")]
    resp = await client.post("/v1/completions", json={"model": "m", "prompt": "x", "stream": stream})
    body = await resp.json()
    assert_openai_error(resp.status, body, 503, "busy")
    assert body["error"]["type"] == "server_error"


async def test_error_mid_stream_is_an_error_event(client: TestClient, fake: FakeInference) -> None:
    fake.script = [msg("partial"), RunnerError("runner process died")]
    resp = await client.post("/v1/chat/completions",
                             json={"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]})
    assert resp.status == 200
    events = sse_events(await resp.text())
    assert "[DONE]" not in events
    last = json.loads(events[-1])
    assert last["error"]["message"] == "runner process died" and last["error"]["type"] == "server_error"
    assert fake.closed


async def test_client_disconnect_closes_the_inference_stream(client: TestClient, fake: FakeInference) -> None:
    # An endless answer: only the client going away can end it, by closing the inference iterator
    # (which cancels the sequence in the runner).
    fake.script = [msg("word ")] * 1_000_000
    resp = await client.post("/v1/chat/completions",
                             json={"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]})
    assert resp.status == 200
    assert (await resp.content.readline()).startswith(b"data: ")
    resp.close()
    deadline = asyncio.get_running_loop().time() + 10
    while not fake.closed:
        assert asyncio.get_running_loop().time() < deadline, "the inference stream was not closed"
        await asyncio.sleep(0.01)


async def test_bad_requests_never_reach_inference(client: TestClient, fake: FakeInference) -> None:
    user = [{"role": "user", "content": "x"}]
    cases: list[tuple[str, dict[str, object], str, object]] = [
        ("/v1/chat/completions", {"model": "m", "messages": user, "n": 2}, "'n'", "n"),
        ("/v1/chat/completions", {"model": "m", "messages": user, "options": {"num_ctx": "lots"}}, "num_ctx", ANY_PARAM),
        ("/v1/chat/completions", {"model": "m", "messages": user, "temperature": "hot"}, "temperature", "temperature"),
        ("/v1/chat/completions", {"model": "m"}, "messages", "messages"),
        ("/v1/chat/completions", {"messages": user}, "model", "model"),
        ("/v1/chat/completions", {"model": "m", "messages": [{"role": "user"}]}, "content", "messages[0].content"),
        ("/v1/completions", {"model": "m", "prompt": "x", "echo": True}, "echo", "echo"),
        ("/v1/embeddings", {"model": "m", "input": 3}, "input", ANY_PARAM),
        ("/v1/embeddings", {"model": "m", "input": "x", "encoding_format": "hex"}, "encoding_format", ANY_PARAM),
    ]
    for path, body, text, param in cases:
        resp = await client.post(path, json=body)
        assert_openai_error(resp.status, await resp.json(), 400, text, param=param)
    resp = await client.post("/v1/chat/completions", data=b"{not json", headers={"Content-Type": "application/json"})
    assert_openai_error(resp.status, await resp.json(), 400, "invalid JSON")
    # The body is checked to be an object once, at the HTTP edge; the parsers take a JSONObject.
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
        resp = await client.post(path, data=b"[1, 2]", headers={"Content-Type": "application/json"})
        assert_openai_error(resp.status, await resp.json(), 400, "must be a JSON object, got an array")
    assert fake.requests == []


async def test_completions_and_embeddings_routes(client: TestClient, fake: FakeInference) -> None:
    fake.script = [{"model": "m", "response": "ab", "done": False},
                   {"model": "m", "response": "", "done": True, "done_reason": "stop", "eval_count": 1}]
    resp = await client.post("/v1/completions", json={"model": "m", "prompt": "p", "suffix": "s", "stream": True})
    events = sse_events(await resp.text())
    assert json.loads(events[0])["choices"][0]["text"] == "ab" and events[-1] == "[DONE]"
    assert fake.requests[-1].prompt == "p" and fake.requests[-1].suffix == "s"
    fake.script = []
    resp = await client.post("/v1/embeddings", json={"model": "e", "input": ["a", "b"], "encoding_format": "base64"})
    data = await resp.json()
    assert resp.status == 200 and [d["index"] for d in data["data"]] == [0, 1]
    assert all(isinstance(d["embedding"], str) for d in data["data"])
    assert data["usage"] == {"prompt_tokens": 4, "total_tokens": 4}


async def test_unknown_v1_path_is_openai_shaped(client: TestClient) -> None:
    resp = await client.get("/v1/nothing-here")
    assert_openai_error(resp.status, await resp.json(), 404)
