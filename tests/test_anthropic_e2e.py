"""End to end: the official ``anthropic`` SDK against the real daemon's ``/v1/messages`` on tiny models.

One daemon serves the module (``tiny``: no tools, no vision; ``tiny-tools``: a template with
tools). Outputs of a random-weight model are meaningless, so these tests check shapes, counts,
equality with the native API (the same inference path), forced tool calls, and every bad input's
status and Anthropic error shape. The behaviour that needs a real model is in test_anthropic_real.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import jsonschema
import pytest

from tests.agent_helpers import CHAT, TOOLS, WEATHER_SCHEMA, create_tiny_models, post, start_agent_daemon
from tests.daemon import Daemon
from tests.helpers import assert_anthropic_error

pytestmark = pytest.mark.e2e

GREEDY: dict[str, Any] = {"temperature": 0, "top_k": 1}
HELLO = [{"role": "user", "content": "Why is the sky blue?"}]
WEATHER_TOOL = {"name": "get_weather", "description": "Current weather in a city", "input_schema": WEATHER_SCHEMA}
PNG_1PX = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, tiny_chat_gguf: Path) -> Iterator[Daemon]:
    d = start_agent_daemon(tmp_path_factory.mktemp("anthropic-e2e"), tiny_chat_gguf)
    yield d
    print(f"--- daemon log ---\n{d.logs()}")
    d.stop()


@pytest.fixture(scope="module")
def client(daemon: Daemon) -> anthropic.Anthropic:
    # No retries: a 5xx must surface in the test, not be retried away.
    return anthropic.Anthropic(base_url=daemon.base_url, api_key="unused", max_retries=0, timeout=120)


def test_create_matches_native_chat_and_stream_matches_create(client: anthropic.Anthropic, daemon: Daemon) -> None:
    msg = client.messages.create(model=CHAT, max_tokens=12, messages=HELLO, system="You are terse.", extra_body=GREEDY)
    assert msg.type == "message" and msg.role == "assistant" and msg.id.startswith("msg_")
    assert msg.model == CHAT
    assert [b.type for b in msg.content] == ["text"]
    text = msg.content[0].text  # type: ignore[union-attr]
    assert msg.stop_reason in ("end_turn", "max_tokens") and msg.stop_sequence is None
    assert 0 < msg.usage.output_tokens <= 12
    if msg.stop_reason == "max_tokens":
        assert msg.usage.output_tokens == 12

    # The same request on the native API: the same prompt, the same tokens (one inference path).
    status, native = daemon.request("POST", "/api/chat", {
        "model": CHAT, "stream": False, "options": {"num_predict": 12, **GREEDY},
        "messages": [{"role": "system", "content": "You are terse."}, *HELLO]})
    assert status == 200, native
    assert native["message"]["content"] == text
    assert native["eval_count"] == msg.usage.output_tokens
    assert native["done_reason"] == ("length" if msg.stop_reason == "max_tokens" else "stop")

    with client.messages.stream(model=CHAT, max_tokens=12, messages=HELLO, system="You are terse.",
                                extra_body=GREEDY) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 1, "the answer must stream in pieces"
    assert "".join(pieces) == text
    assert final.content[0].text == text  # type: ignore[union-attr]
    assert final.stop_reason == msg.stop_reason
    assert final.usage.output_tokens == msg.usage.output_tokens
    assert final.usage.input_tokens > 0


def test_raw_event_sequence(client: anthropic.Anthropic) -> None:
    events = list(client.messages.create(model=CHAT, max_tokens=6, messages=HELLO, stream=True, extra_body=GREEDY))
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert kinds[1] == "content_block_start" and kinds[-3] == "content_block_stop"
    assert set(kinds[2:-3]) == {"content_block_delta"}
    assert all(e.delta.type == "text_delta" for e in events[2:-3])  # type: ignore[union-attr]
    assert events[-2].usage.output_tokens == len(events[2:-3]) or events[-2].usage.output_tokens >= 1  # type: ignore[union-attr]


def test_count_tokens_is_the_prompt_the_model_is_given(tmp_path_factory: pytest.TempPathFactory,
                                                        daemon_factory: Callable[..., Daemon],
                                                        tiny_chat_gguf: Path) -> None:
    # A fresh daemon: its first request evaluates the whole prompt (no cached prefix to reuse).
    d = daemon_factory()
    create_tiny_models(d, tiny_chat_gguf)
    client = anthropic.Anthropic(base_url=d.base_url, api_key="unused", max_retries=0, timeout=120)
    kwargs: dict[str, Any] = {"model": CHAT, "messages": HELLO, "system": "You are terse."}
    counted = client.messages.count_tokens(**kwargs)
    assert counted.input_tokens > 10
    msg = client.messages.create(max_tokens=2, **kwargs, extra_body=GREEDY)
    assert msg.usage.input_tokens == counted.input_tokens
    # A longer conversation counts more; tools count too.
    longer = client.messages.count_tokens(model=CHAT, system="You are terse.",
                                          messages=[*HELLO, {"role": "assistant", "content": "Rayleigh."},
                                                    {"role": "user", "content": "Say more."}])
    assert longer.input_tokens > counted.input_tokens
    with_tools = client.messages.count_tokens(model=TOOLS, messages=HELLO, tools=[WEATHER_TOOL])  # type: ignore[list-item]
    without = client.messages.count_tokens(model=TOOLS, messages=HELLO)
    assert with_tools.input_tokens > without.input_tokens


def test_forced_tool_use_round_trip(client: anthropic.Anthropic, daemon: Daemon) -> None:
    msg = client.messages.create(model=TOOLS, max_tokens=60, messages=[{"role": "user", "content": "Weather?"}],
                                 tools=[WEATHER_TOOL], tool_choice={"type": "any"}, extra_body=GREEDY)  # type: ignore[list-item]
    assert msg.stop_reason == "tool_use"
    uses = [b for b in msg.content if b.type == "tool_use"]
    assert len(uses) == 1
    use = uses[0]
    assert use.name == "get_weather" and use.id  # type: ignore[union-attr]
    jsonschema.validate(use.input, WEATHER_SCHEMA)  # type: ignore[union-attr]

    history: Any = [{"role": "user", "content": "Weather?"}, {"role": "assistant", "content": msg.content},
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,  # type: ignore[union-attr]
                                                  "content": "18 degrees and sunny"}]}]
    follow = client.messages.create(model=TOOLS, max_tokens=8, tools=[WEATHER_TOOL], extra_body=GREEDY,  # type: ignore[list-item]
                                    messages=history)
    assert follow.stop_reason in ("end_turn", "max_tokens", "tool_use")
    assert follow.usage.output_tokens > 0
    # The call and its result are in the prompt: it is longer than the question alone by both.
    asked = client.messages.count_tokens(model=TOOLS, tools=[WEATHER_TOOL], messages=history[:1])  # type: ignore[list-item]
    answered = client.messages.count_tokens(model=TOOLS, tools=[WEATHER_TOOL], messages=history)  # type: ignore[list-item]
    assert answered.input_tokens > asked.input_tokens + len(json.dumps(use.input)) // 4  # type: ignore[union-attr]
    status, rendered = daemon.request("POST", "/api/render", {"model": TOOLS, "messages": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": use.input}}]},  # type: ignore[union-attr]
        {"role": "tool", "content": "18 degrees and sunny"}]})
    assert status == 200 and "18 degrees and sunny" in rendered["prompt"]

    # Streamed: the tool_use block arrives as input_json_delta and the SDK rebuilds the same input.
    with client.messages.stream(model=TOOLS, max_tokens=60, messages=[{"role": "user", "content": "Weather?"}],
                                tools=[WEATHER_TOOL], tool_choice={"type": "tool", "name": "get_weather"},  # type: ignore[list-item]
                                extra_body=GREEDY) as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_message()
    assert "input_json" in kinds
    streamed = [b for b in final.content if b.type == "tool_use"]
    assert final.stop_reason == "tool_use" and len(streamed) == 1
    assert streamed[0].input == use.input  # type: ignore[union-attr]


BAD_BODIES: list[tuple[str, dict[str, Any], int, str]] = [
    ("missing max_tokens", {"model": CHAT, "messages": HELLO}, 400, "max_tokens"),
    ("zero max_tokens", {"model": CHAT, "max_tokens": 0, "messages": HELLO}, 400, "max_tokens"),
    ("string max_tokens", {"model": CHAT, "max_tokens": "many", "messages": HELLO}, 400, "max_tokens"),
    ("missing model", {"max_tokens": 5, "messages": HELLO}, 400, "model"),
    ("unknown model", {"model": "no-such-model", "max_tokens": 5, "messages": HELLO}, 404, "not found"),
    ("no messages", {"model": CHAT, "max_tokens": 5, "messages": []}, 400, "messages"),
    ("system role in messages", {"model": CHAT, "max_tokens": 5,
                                 "messages": [{"role": "system", "content": "x"}]}, 400, "role"),
    ("unknown block type", {"model": CHAT, "max_tokens": 5, "messages": [
        {"role": "user", "content": [{"type": "document", "source": {}}]}]}, 400, "document"),
    ("block that is not an object", {"model": CHAT, "max_tokens": 5, "messages": [
        {"role": "user", "content": ["hi"]}]}, 400, "content block"),
    ("tool_use in a user message", {"model": CHAT, "max_tokens": 5, "messages": [
        {"role": "user", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]}]}, 400, "tool_use"),
    ("tool_result in an assistant message", {"model": CHAT, "max_tokens": 5, "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "tool_result", "tool_use_id": "t"}]}]}, 400, "tool_result"),
    ("tool_result for an unknown tool_use_id", {"model": TOOLS, "max_tokens": 5, "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                           "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_2", "content": "x"}]}]},
     400, "toolu_2"),
    ("tool_use input not an object", {"model": TOOLS, "max_tokens": 5, "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": "{}"}]}]},
     400, "input"),
    ("image on a model without vision", {"model": CHAT, "max_tokens": 5, "messages": [
        {"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                                  "data": PNG_1PX}},
                                     {"type": "text", "text": "What is this?"}]}]}, 400, "image"),
    ("image URL", {"model": CHAT, "max_tokens": 5, "messages": [
        {"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "http://x/y.png"}}]}]},
     400, "base64"),
    ("image not base64", {"model": CHAT, "max_tokens": 5, "messages": [
        {"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                                  "data": "@@@"}}]}]}, 400, "base64"),
    ("system with an image block", {"model": CHAT, "max_tokens": 5, "messages": HELLO,
                                    "system": [{"type": "image"}]}, 400, "system"),
    ("server tool", {"model": TOOLS, "max_tokens": 5, "messages": HELLO,
                     "tools": [{"type": "web_search_20250305", "name": "web_search"}]}, 400, "web_search"),
    ("tool without input_schema", {"model": TOOLS, "max_tokens": 5, "messages": HELLO,
                                   "tools": [{"name": "f"}]}, 400, "input_schema"),
    ("tool_choice names an unknown tool", {"model": TOOLS, "max_tokens": 5, "messages": HELLO,
                                           "tools": [WEATHER_TOOL], "tool_choice": {"type": "tool", "name": "g"}},
     400, "tool_choice"),
    ("thinking on a model without thinking", {"model": CHAT, "max_tokens": 5, "messages": HELLO,
                                              "thinking": {"type": "enabled", "budget_tokens": 1024}},
     400, "thinking"),
    ("bad thinking type", {"model": CHAT, "max_tokens": 5, "messages": HELLO, "thinking": {"type": "maybe"}},
     400, "thinking"),
    ("bad stop_sequences", {"model": CHAT, "max_tokens": 5, "messages": HELLO, "stop_sequences": "END"},
     400, "stop_sequences"),
    ("bad temperature", {"model": CHAT, "max_tokens": 5, "messages": HELLO, "temperature": "hot"},
     400, "temperature"),
]


@pytest.mark.parametrize(("path", "body", "status", "contains"),
                         [(p, b, s, c) for _, b, s, c in BAD_BODIES for p in ("/v1/messages",)],
                         ids=[name for name, *_ in BAD_BODIES])
def test_bad_input_is_an_anthropic_error(daemon: Daemon, path: str, body: dict[str, Any], status: int,
                                         contains: str) -> None:
    got, data, _ = post(daemon, path, body)
    assert_anthropic_error(got, data, status, contains)
    if "max_tokens" not in contains:
        # count_tokens parses the same body the same way (it needs no max_tokens).
        got, data, _ = post(daemon, "/v1/messages/count_tokens", body)
        assert_anthropic_error(got, data, status, contains)


def test_invalid_json_and_unknown_route(daemon: Daemon) -> None:
    got, data, _ = post(daemon, "/v1/messages", b"{not json")
    assert_anthropic_error(got, data, 400, "invalid JSON")
    got, data, _ = post(daemon, "/v1/messages/nope", {})
    assert_anthropic_error(got, data, 404)


def test_sdk_raises_typed_errors(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as not_found:
        client.messages.create(model="no-such-model", max_tokens=5, messages=HELLO)  # type: ignore[arg-type]
    assert not_found.value.status_code == 404
    assert_anthropic_error(404, not_found.value.body, 404, "no-such-model")  # type: ignore[arg-type]
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.create(model=CHAT, max_tokens=-1, messages=HELLO)  # type: ignore[arg-type]
    assert_anthropic_error(400, bad.value.body, 400, "max_tokens")  # type: ignore[arg-type]
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_1PX}}
    with pytest.raises(anthropic.BadRequestError) as no_vision, client.messages.stream(
            model=CHAT, max_tokens=5, messages=[{"role": "user", "content": [image]}]):  # type: ignore[list-item]
        pass
    assert_anthropic_error(400, no_vision.value.body, 400, "image")  # type: ignore[arg-type]


def test_api_keys_bearer_and_x_api_key(daemon_factory: Callable[..., Daemon]) -> None:
    key = "sk-test-agents"
    d = daemon_factory(extra_env={"OLLAMALIKE_API_KEY": key})
    body = {"model": "no-such-model", "max_tokens": 2, "messages": HELLO}
    for headers in ({}, {"x-api-key": "wrong"}, {"Authorization": "Bearer wrong"}):
        got, data, _ = post(d, "/v1/messages", body, headers)
        assert_anthropic_error(got, data, 401)
    with pytest.raises(anthropic.AuthenticationError) as denied:
        anthropic.Anthropic(base_url=d.base_url, api_key="wrong", max_retries=0).messages.count_tokens(
            model=CHAT, messages=HELLO)  # type: ignore[arg-type]
    assert_anthropic_error(401, denied.value.body, 401)  # type: ignore[arg-type]
    # The right key passes as x-api-key (the SDK's api_key, with its anthropic-version header) and as a
    # bearer token (its auth_token): the request reaches the handler, which answers the unknown model.
    for client in (anthropic.Anthropic(base_url=d.base_url, api_key=key, max_retries=0, timeout=120),
                   anthropic.Anthropic(base_url=d.base_url, auth_token=key, max_retries=0, timeout=120)):
        with pytest.raises(anthropic.NotFoundError) as missing:
            client.messages.create(**body)  # type: ignore[arg-type]
        assert_anthropic_error(404, missing.value.body, 404, "no-such-model")  # type: ignore[arg-type]
    got, data, _ = post(d, "/v1/messages", body, {"x-api-key": key, "anthropic-version": "2023-06-01"})
    assert_anthropic_error(got, data, 404)
