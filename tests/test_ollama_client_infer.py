"""The official ``ollama`` Python client (sync and async, streamed and not) against the real daemon:
generate, chat (with tools), embed, embeddings and ps."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import ollama
import pytest

from tests.daemon import Daemon
from tests.infer_helpers import start_serving_daemon

pytestmark = pytest.mark.e2e

OPTS = {"num_predict": 8, "seed": 7, "temperature": 0}
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
# A grammar that makes the tiny random model answer with a call to get_weather.
CALL_SCHEMA = {"type": "object", "properties": {
    "name": {"const": "get_weather"},
    "arguments": {"type": "object", "properties": {"city": {"enum": ["Paris", "Oslo"]}}, "required": ["city"]}},
    "required": ["name", "arguments"]}


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory, tiny_chat_gguf: Path, tiny_embed_gguf: Path) -> Iterator[Daemon]:
    daemon = start_serving_daemon(tmp_path_factory.mktemp("ollama-client"), tiny_chat_gguf, tiny_embed_gguf,
                                  tools=True)
    yield daemon
    print(daemon.logs())
    daemon.stop()


def test_generate_sync(d: Daemon) -> None:
    client = ollama.Client(host=d.base_url)
    resp = client.generate(model="tiny", prompt="Hello", options=OPTS)
    assert resp.done and resp.done_reason == "length" and resp.eval_count == 8
    assert resp.total_duration and resp.total_duration > 0 and resp.prompt_eval_count
    assert resp.context and len(resp.context) == resp.prompt_eval_count + resp.eval_count
    parts = list(client.generate(model="tiny", prompt="Hello", options=OPTS, stream=True))
    assert parts[-1].done and not any(p.done for p in parts[:-1])
    assert "".join(p.response for p in parts) == resp.response


def test_chat_sync_with_tools(d: Daemon) -> None:
    client = ollama.Client(host=d.base_url)
    resp = client.chat(model="tiny", messages=[{"role": "user", "content": "Hi"}], options=OPTS)
    assert resp.message.role == "assistant" and resp.done and resp.eval_count == 8
    resp = client.chat(model="tools", messages=[{"role": "user", "content": "Weather in Oslo?"}],
                       tools=[WEATHER_TOOL], format=CALL_SCHEMA, options={**OPTS, "num_predict": 64})
    calls = resp.message.tool_calls or []
    assert len(calls) == 1 and calls[0].function.name == "get_weather"
    assert calls[0].function.arguments["city"] in ("Paris", "Oslo")
    # The tool result goes back as a tool message and the conversation continues.
    follow = client.chat(model="tools", tools=[WEATHER_TOOL], options=OPTS, messages=[
        {"role": "user", "content": "Weather in Oslo?"}, resp.message,
        {"role": "tool", "content": "cold", "tool_name": "get_weather"}])
    assert follow.done


def test_embed_and_embeddings_sync(d: Daemon) -> None:
    client = ollama.Client(host=d.base_url)
    resp = client.embed(model="emb", input=["one", "two", "three"])
    assert len(resp.embeddings) == 3 and len({len(v) for v in resp.embeddings}) == 1
    legacy = client.embeddings(model="emb", prompt="one")
    assert legacy.embedding == pytest.approx(list(resp.embeddings[0]), abs=1e-5)


def test_ps_sync(d: Daemon) -> None:
    client = ollama.Client(host=d.base_url)
    client.generate(model="tiny", prompt="", keep_alive="10m")
    running = client.ps()
    names = [m.model for m in running.models]
    assert "tiny:latest" in names
    entry = next(m for m in running.models if m.model == "tiny:latest")
    assert entry.size and entry.digest and entry.expires_at is not None and entry.details.family == "llama"
    assert entry.context_length == 2048
    client.generate(model="tiny", prompt="", keep_alive=0)
    assert "tiny:latest" not in [m.model for m in client.ps().models]


async def test_async_client(d: Daemon) -> None:
    client = ollama.AsyncClient(host=d.base_url)
    resp = await client.generate(model="tiny", prompt="Hello", options=OPTS)
    assert resp.done and resp.eval_count == 8
    parts = [p async for p in await client.chat(model="tiny", messages=[{"role": "user", "content": "Hi"}],
                                                options=OPTS, stream=True)]
    assert parts[-1].done and parts[-1].eval_count == 8
    one = await client.chat(model="tiny", messages=[{"role": "user", "content": "Hi"}], options=OPTS)
    assert one.message.content == "".join(p.message.content or "" for p in parts)
    emb = await client.embed(model="emb", input="hello")
    assert len(emb.embeddings) == 1
    assert isinstance((await client.ps()).models, list)


def test_client_errors(d: Daemon) -> None:
    client = ollama.Client(host=d.base_url)
    with pytest.raises(ollama.ResponseError) as e:
        client.generate(model="nosuch", prompt="x")
    assert e.value.status_code == 404 and "not found" in e.value.error
    with pytest.raises(ollama.ResponseError) as e:
        client.chat(model="tiny", messages=[{"role": "user", "content": "x"}], options={"num_ctx": -1})
    assert e.value.status_code == 400 and "num_ctx" in e.value.error
