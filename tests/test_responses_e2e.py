"""End to end: the official ``openai`` SDK's ``client.responses`` against the real daemon on tiny models.

One daemon serves the module (``tiny``; ``tiny-tools`` with a tools template). Random weights make
the text meaningless, so these tests check the response and event shapes, equality with the native
API, schema-constrained output, forced function calls and their ``function_call_output`` round trip,
``previous_response_id`` chaining (and its bounded store), and bad input in OpenAI's error shape.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import openai
import pytest

from ollamalike.server.responses_store import PreviousResponseNotFound, ResponseStore
from tests.agent_helpers import CHAT, TOOLS, WEATHER_SCHEMA, post, start_agent_daemon
from tests.daemon import Daemon
from tests.helpers import assert_openai_error

pytestmark = pytest.mark.e2e

GREEDY: dict[str, Any] = {"temperature": 0}
WEATHER_TOOL: Any = {"type": "function", "name": "get_weather", "description": "Current weather in a city",
                     "parameters": WEATHER_SCHEMA}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"answer": {"type": "string", "maxLength": 20}, "n": {"type": "integer", "minimum": 0, "maximum": 9}},
    "required": ["answer", "n"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, tiny_chat_gguf: Path) -> Iterator[Daemon]:
    d = start_agent_daemon(tmp_path_factory.mktemp("responses-e2e"), tiny_chat_gguf)
    yield d
    print(f"--- daemon log ---\n{d.logs()}")
    d.stop()


@pytest.fixture(scope="module")
def client(daemon: Daemon) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{daemon.base_url}/v1", api_key="unused", max_retries=0, timeout=120)


def test_create_matches_native_chat_and_stream_matches_create(client: openai.OpenAI, daemon: Daemon) -> None:
    resp = client.responses.create(model=CHAT, input="Why is the sky blue?", instructions="You are terse.",
                                   max_output_tokens=12, **GREEDY)
    assert resp.object == "response" and resp.id.startswith("resp_") and resp.model == CHAT
    assert resp.status in ("completed", "incomplete")
    assert [item.type for item in resp.output] == ["message"]
    message = resp.output[0]
    assert message.role == "assistant" and message.content[0].type == "output_text"  # type: ignore[union-attr]
    text = resp.output_text
    assert text == message.content[0].text  # type: ignore[union-attr]
    assert resp.usage is not None and 0 < resp.usage.output_tokens <= 12
    assert resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens
    if resp.status == "incomplete":
        assert resp.incomplete_details is not None and resp.incomplete_details.reason == "max_output_tokens"
        assert resp.usage.output_tokens == 12

    status, native = daemon.request("POST", "/api/chat", {
        "model": CHAT, "stream": False, "options": {"num_predict": 12, **GREEDY},
        "messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Why is the sky blue?"}]})
    assert status == 200 and native["message"]["content"] == text

    events = list(client.responses.create(model=CHAT, input="Why is the sky blue?", instructions="You are terse.",
                                          max_output_tokens=12, stream=True, **GREEDY))
    kinds = [e.type for e in events]
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert kinds[3] == "response.content_part.added"
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          f"response.{resp.status}"]
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]  # type: ignore[union-attr]
    assert len(deltas) > 1 and "".join(deltas) == text
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final = events[-1].response  # type: ignore[union-attr]
    assert final.output_text == text and final.usage.output_tokens == resp.usage.output_tokens


def test_json_schema_format_validates(client: openai.OpenAI) -> None:
    resp = client.responses.create(model=CHAT, input="Answer as JSON.", max_output_tokens=80, **GREEDY,
                                   text={"format": {"type": "json_schema", "name": "answer", "schema": SCHEMA}})
    jsonschema.validate(json.loads(resp.output_text), SCHEMA)
    assert resp.text.format.type == "json_schema"  # type: ignore[union-attr]


def test_forced_function_call_and_output_round_trip(client: openai.OpenAI) -> None:
    resp = client.responses.create(model=TOOLS, input="Weather?", tools=[WEATHER_TOOL], tool_choice="required",
                                   max_output_tokens=60, **GREEDY)
    calls = [item for item in resp.output if item.type == "function_call"]
    assert len(calls) == 1, resp.output
    call = calls[0]
    assert call.name == "get_weather" and call.call_id  # type: ignore[union-attr]
    jsonschema.validate(json.loads(call.arguments), WEATHER_SCHEMA)  # type: ignore[union-attr]

    # The call and its output sent back as input items (no chaining): the model answers.
    follow = client.responses.create(model=TOOLS, tools=[WEATHER_TOOL], max_output_tokens=8, **GREEDY, input=[
        {"role": "user", "content": "Weather?"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},  # type: ignore[union-attr]
        {"type": "function_call_output", "call_id": call.call_id, "output": "18 degrees and sunny"}])  # type: ignore[union-attr]
    assert follow.status in ("completed", "incomplete") and follow.usage.output_tokens > 0  # type: ignore[union-attr]

    # Chained on the first response: only the output item is sent.
    chained = client.responses.create(model=TOOLS, tools=[WEATHER_TOOL], max_output_tokens=8, **GREEDY,
                                      previous_response_id=resp.id, input=[
                                          {"type": "function_call_output", "call_id": call.call_id,  # type: ignore[union-attr]
                                           "output": "18 degrees and sunny"}])
    assert chained.previous_response_id == resp.id
    assert chained.output_text == follow.output_text

    # Streamed: one function_call item with its arguments delta and done events.
    events = list(client.responses.create(model=TOOLS, input="Weather?", tools=[WEATHER_TOOL], stream=True,
                                          tool_choice={"type": "function", "name": "get_weather"},
                                          max_output_tokens=60, **GREEDY))
    kinds = [e.type for e in events]
    assert "response.function_call_arguments.delta" in kinds and "response.function_call_arguments.done" in kinds
    done = [e.item for e in events if e.type == "response.output_item.done"]  # type: ignore[union-attr]
    assert [i.type for i in done] == ["function_call"]
    assert json.loads(done[0].arguments) == json.loads(call.arguments)  # type: ignore[union-attr]


def test_previous_response_id_chains_the_conversation(client: openai.OpenAI, daemon: Daemon) -> None:
    first = client.responses.create(model=CHAT, input="My name is Zed.", max_output_tokens=6, **GREEDY)
    second = client.responses.create(model=CHAT, input="What is my name?", previous_response_id=first.id,
                                     max_output_tokens=6, **GREEDY)
    # The chained request is the whole conversation: the same answer as the native API given it.
    status, native = daemon.request("POST", "/api/chat", {
        "model": CHAT, "stream": False, "options": {"num_predict": 6, **GREEDY}, "messages": [
            {"role": "user", "content": "My name is Zed."},
            {"role": "assistant", "content": first.output_text},
            {"role": "user", "content": "What is my name?"}]})
    assert status == 200 and native["message"]["content"] == second.output_text
    # A streamed response is stored too, and store=false is not.
    streamed = list(client.responses.create(model=CHAT, input="Hi", max_output_tokens=3, stream=True))
    streamed_id = streamed[-1].response.id  # type: ignore[union-attr]
    client.responses.create(model=CHAT, input="Again", previous_response_id=streamed_id, max_output_tokens=3)
    unstored = client.responses.create(model=CHAT, input="Hi", max_output_tokens=3, store=False)
    for missing in ("resp_doesnotexist", unstored.id):
        with pytest.raises(openai.NotFoundError) as e:
            client.responses.create(model=CHAT, input="x", previous_response_id=missing)
        assert_openai_error(404, {"error": e.value.body}, 404, missing)  # type: ignore[arg-type]
    status, body, _ = post(daemon, "/v1/responses", {"model": CHAT, "input": "x",
                                                     "previous_response_id": "resp_nope"})
    assert_openai_error(status, body, 404, "resp_nope", param="previous_response_id")
    assert body["error"]["code"] == "previous_response_not_found"


def test_store_is_bounded_by_count_and_bytes() -> None:
    store = ResponseStore(max_responses=3, max_bytes=1000)
    for i in range(5):
        store.put(f"r{i}", [{"role": "user", "content": f"m{i}"}])
    assert len(store) == 3
    with pytest.raises(PreviousResponseNotFound, match="r0"):
        store.get("r0")
    store.get("r2")  # now the most recently used: r3 goes first
    store.put("big", [{"role": "user", "content": "x" * 700}])
    assert store.bytes <= 1000
    assert store.get("r2")[0]["content"] == "m2" and store.get("big")
    with pytest.raises(PreviousResponseNotFound, match="r3"):
        store.get("r3")
    store.put("huge", [{"role": "user", "content": "x" * 2000}])  # larger than the whole store: not kept
    with pytest.raises(PreviousResponseNotFound, match="huge"):
        store.get("huge")


BAD: list[tuple[str, dict[str, Any], str]] = [
    ("missing model", {"input": "hi"}, "model"),
    ("missing input", {"model": CHAT}, "input"),
    ("input of the wrong type", {"model": CHAT, "input": 5}, "input"),
    ("unknown item type", {"model": CHAT, "input": [{"type": "item_reference", "id": "x"}]}, "item_reference"),
    ("bad role", {"model": CHAT, "input": [{"role": "robot", "content": "hi"}]}, "role"),
    ("unknown content part", {"model": CHAT, "input": [{"role": "user", "content": [{"type": "input_file"}]}]},
     "input_file"),
    ("image URL", {"model": CHAT, "input": [{"role": "user", "content": [
        {"type": "input_image", "image_url": "https://example.com/a.png"}]}]}, "base64"),
    ("output for an unknown call", {"model": TOOLS, "input": [
        {"type": "function_call_output", "call_id": "call_x", "output": "1"}]}, "call_x"),
    ("built-in tool", {"model": TOOLS, "input": "hi", "tools": [{"type": "web_search"}]}, "web_search"),
    ("tool_choice names an unknown function", {"model": TOOLS, "input": "hi", "tools": [WEATHER_TOOL],
                                               "tool_choice": {"type": "function", "name": "nope"}}, "nope"),
    ("bad text.format", {"model": CHAT, "input": "hi", "text": {"format": {"type": "yaml"}}}, "text.format"),
    ("json_schema without schema", {"model": CHAT, "input": "hi", "text": {"format": {"type": "json_schema"}}},
     "schema"),
    ("bad reasoning effort", {"model": CHAT, "input": "hi", "reasoning": {"effort": "extreme"}}, "effort"),
    ("reasoning on a model without thinking", {"model": CHAT, "input": "hi", "reasoning": {"effort": "high"}},
     "thinking"),
    ("bad max_output_tokens", {"model": CHAT, "input": "hi", "max_output_tokens": 0}, "max_output_tokens"),
    ("background", {"model": CHAT, "input": "hi", "background": True}, "background"),
]


@pytest.mark.parametrize(("body", "contains"), [(b, c) for _, b, c in BAD], ids=[n for n, *_ in BAD])
def test_bad_input_is_an_openai_error(daemon: Daemon, body: dict[str, Any], contains: str) -> None:
    status, data, _ = post(daemon, "/v1/responses", body)
    assert_openai_error(status, data, 400, contains)


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as e:
        client.responses.create(model="no-such-model", input="hi")
    assert_openai_error(404, {"error": e.value.body}, 404, "no-such-model")  # type: ignore[arg-type]
