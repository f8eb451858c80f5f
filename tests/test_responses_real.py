"""Real model: the official ``openai`` SDK's ``client.responses`` against Qwen2.5-Coder 0.5B (``qwen``).

What only a real model shows: a function tool round trip through ``function_call_output`` ends in
an answer using the tool's result, ``text.format`` json_schema output validates, a follow-up
chained by ``previous_response_id`` remembers the conversation, and greedy streaming joins to the
unstreamed answer.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import openai
import pytest

from tests.daemon import Daemon

pytestmark = pytest.mark.e2e

QWEN = "qwen"
GREEDY: dict[str, Any] = {"temperature": 0}
WEATHER_TOOL: Any = {
    "type": "function", "name": "get_weather", "description": "Get the current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 40}, "country": {"type": "string", "maxLength": 40}},
    "required": ["city", "country"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def client(real_daemon: Daemon) -> openai.OpenAI:
    return openai.OpenAI(base_url=real_daemon.base_url + "/v1", api_key="unused", max_retries=0, timeout=300)


def test_create_and_stream_agree(client: openai.OpenAI) -> None:
    kwargs: Any = {"model": QWEN, "input": "Name three primary colors, comma separated.",
                   "instructions": "Be brief.", "max_output_tokens": 40, **GREEDY}
    resp = client.responses.create(**kwargs)
    assert resp.status == "completed" and "red" in resp.output_text.lower()
    events = list(client.responses.create(stream=True, **kwargs))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")  # type: ignore[union-attr]
    assert text == resp.output_text
    assert events[-1].type == "response.completed"


def test_json_schema_output_validates(client: openai.OpenAI) -> None:
    resp = client.responses.create(model=QWEN, input="Give the capital of France and its country as JSON.",
                                   max_output_tokens=100, **GREEDY,
                                   text={"format": {"type": "json_schema", "name": "place", "schema": SCHEMA}})
    data = json.loads(resp.output_text)
    jsonschema.validate(data, SCHEMA)
    assert "paris" in data["city"].lower()


def test_previous_response_id_remembers(client: openai.OpenAI) -> None:
    first = client.responses.create(model=QWEN, input="My name is Zorblax. Say hello to me.", max_output_tokens=30,
                                    **GREEDY)
    second = client.responses.create(model=QWEN, input="What is my name? Answer with the name only.",
                                     previous_response_id=first.id, max_output_tokens=10, **GREEDY)
    assert "zorblax" in second.output_text.lower(), second.output_text


# As an agent runs it: instructions saying what to do with a tool result (without them, greedy
# Qwen 0.5B calls the tool again instead of answering; see tests/test_real_tools.py).
AGENT_INSTRUCTIONS = "You are a helpful assistant. Call a tool when you need data; once a tool result is given, answer the user in one sentence using it."


def test_function_call_round_trip(client: openai.OpenAI) -> None:
    resp = client.responses.create(model=QWEN, input="What is the weather in Paris right now? Use the tool.",
                                   instructions=AGENT_INSTRUCTIONS, tools=[WEATHER_TOOL], max_output_tokens=100,
                                   **GREEDY)
    calls = [item for item in resp.output if item.type == "function_call"]
    assert len(calls) == 1, resp.output
    call = calls[0]
    assert call.name == "get_weather" and "paris" in json.loads(call.arguments).get("city", "").lower()  # type: ignore[union-attr]
    answer = client.responses.create(model=QWEN, previous_response_id=resp.id, tools=[WEATHER_TOOL],
                                     instructions=AGENT_INSTRUCTIONS, max_output_tokens=100, **GREEDY, input=[
                                         {"type": "function_call_output", "call_id": call.call_id,  # type: ignore[union-attr]
                                          "output": json.dumps({"city": "Paris", "temperature_c": 23, "condition": "sunny"})}])
    assert answer.status == "completed"
    assert "23" in answer.output_text, answer.output_text
