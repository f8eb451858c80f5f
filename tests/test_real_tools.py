"""Tool calling with the real Qwen2.5-Coder 0.5B through the real daemon and the official clients.

Greedy (temperature 0, seed 1): asked about the weather in Paris with a ``get_weather(city)``
tool, Qwen calls it; the call comes back structured with an id on the native API (``ollama``
client) and on OpenAI's (``openai`` client, string arguments), streamed or not; the tool result
sent back (role tool with the call's id) gives a text answer. A structured ``format`` answer that
has a "name" key stays content while tools are offered.

With only its template's default system prompt, greedy Qwen 0.5B calls ``get_weather`` again after
the tool result instead of answering. The round trips therefore run as an agent runs them, with a
system prompt saying what to do with a result: then it calls the tool first and, once the result is
back, answers in words from it. Both are asserted: the call, then a text answer (no call) that uses
the result.
"""

from __future__ import annotations

import json
import re
from typing import Any

import ollama
import openai
import pytest

from tests.daemon import Daemon
from tests.realmodels import QWEN

pytestmark = pytest.mark.e2e

GREEDY = {"temperature": 0, "seed": 1}
QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]
AGENT = [{"role": "system", "content": "You are a helpful assistant. Call a tool when you need data; once a tool "
                                       "result is given, answer the user in one sentence using it."}, *QUESTION]
WEATHER = {"type": "function", "function": {
    "name": "get_weather",
    "description": "Get the current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "The city"}},
                   "required": ["city"]},
}}
RESULT = json.dumps({"city": "Paris", "temperature_c": 22, "condition": "sunny"})
PERSON = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"]}
ALICE = [{"role": "user", "content": "Describe a person named Alice who is 25 years old, as JSON with name and age."}]
CALL_ID = re.compile(r"call_[a-z0-9]{8}")


@pytest.fixture(scope="module")
def native(real_daemon: Daemon) -> ollama.Client:
    return ollama.Client(host=real_daemon.base_url, timeout=600)


@pytest.fixture(scope="module")
def oai(real_daemon: Daemon) -> openai.OpenAI:
    return openai.OpenAI(base_url=real_daemon.base_url + "/v1", api_key="unused", timeout=600, max_retries=0)


def _check_reply(content: str, calls: list[tuple[str, dict[str, Any]]]) -> None:
    """The reply to a tool result: a final text answer that uses it, not another call."""
    assert not calls, (content, calls)
    assert content.strip() and "get_weather" not in content, content
    assert "22" in content and "sunny" in content.lower(), content


# -- native -----------------------------------------------------------------------------------------
def test_native_tool_call_and_tool_result(native: ollama.Client, real_daemon: Daemon) -> None:
    resp = native.chat(model=QWEN, messages=QUESTION, tools=[WEATHER], options=GREEDY)
    calls = resp.message.tool_calls or []
    assert [(c.function.name, dict(c.function.arguments)) for c in calls] == [("get_weather", {"city": "Paris"})], resp
    assert resp.message.content == ""
    assert resp.done_reason == "stop"

    # The official client (0.6) drops ids and tool_call_id: the same request over plain HTTP.
    status, body = real_daemon.request("POST", "/api/chat", {"model": QWEN, "messages": QUESTION, "tools": [WEATHER],
                                                             "options": GREEDY, "stream": False}, timeout=600)
    assert status == 200, body
    (call,) = body["message"]["tool_calls"]
    assert CALL_ID.fullmatch(call["id"]), call
    assert call["function"] == {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}

    status, body = real_daemon.request("POST", "/api/chat", {"model": QWEN, "messages": AGENT, "tools": [WEATHER],
                                                             "options": GREEDY, "stream": False}, timeout=600)
    assert status == 200, body
    (call,) = body["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather" and call["function"]["arguments"] == {"city": "Paris"}
    history = [*AGENT, body["message"], {"role": "tool", "content": RESULT, "tool_call_id": call["id"],
                                         "tool_name": "get_weather"}]
    status, rendered = real_daemon.request("POST", "/api/render", {"model": QWEN, "messages": history,
                                                                   "tools": [WEATHER]})
    assert status == 200 and RESULT in rendered["prompt"], rendered
    assert rendered["prompt"].index(RESULT) > rendered["prompt"].index("Paris?")
    status, answer = real_daemon.request("POST", "/api/chat", {"model": QWEN, "messages": history, "tools": [WEATHER],
                                                               "options": {**GREEDY, "num_predict": 60},
                                                               "stream": False}, timeout=600)
    assert status == 200, answer
    assert answer["done"] is True
    _check_reply(answer["message"].get("content") or "",
                 [(c["function"]["name"], c["function"]["arguments"]) for c in answer["message"].get("tool_calls", [])])

    # The official client's history form (tool_name) works as well.
    agent = native.chat(model=QWEN, messages=AGENT, tools=[WEATHER], options=GREEDY)
    assert [c.function.name for c in agent.message.tool_calls or []] == ["get_weather"], agent
    final = native.chat(model=QWEN, messages=[*AGENT, agent.message, {"role": "tool", "content": RESULT,
                                                                        "tool_name": "get_weather"}],
                        tools=[WEATHER], options={**GREEDY, "num_predict": 60})
    _check_reply(final.message.content or "",
                 [(c.function.name, dict(c.function.arguments)) for c in final.message.tool_calls or []])


def test_native_streamed_tool_call(native: ollama.Client) -> None:
    chunks = list(native.chat(model=QWEN, messages=QUESTION, tools=[WEATHER], options=GREEDY, stream=True))
    calls = [c for ch in chunks for c in ch.message.tool_calls or []]
    assert [(c.function.name, dict(c.function.arguments)) for c in calls] == [("get_weather", {"city": "Paris"})]
    # None of the call's text (its fence, its JSON) streams as content.
    assert "".join(ch.message.content or "" for ch in chunks) == ""
    assert chunks[-1].done and chunks[-1].done_reason == "stop"


# -- OpenAI -----------------------------------------------------------------------------------------
def test_openai_tool_call_and_tool_result(oai: openai.OpenAI) -> None:
    messages: list[Any] = list(AGENT)
    resp = oai.chat.completions.create(model=QWEN, messages=messages, tools=[WEATHER], temperature=0, seed=1)
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls or []
    assert call.type == "function" and CALL_ID.fullmatch(call.id), call
    assert call.function.name == "get_weather"
    assert isinstance(call.function.arguments, str) and json.loads(call.function.arguments) == {"city": "Paris"}

    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": RESULT})
    answer = oai.chat.completions.create(model=QWEN, messages=messages, tools=[WEATHER], temperature=0, seed=1,
                                         max_tokens=60)
    final = answer.choices[0]
    calls = [(c.function.name, json.loads(c.function.arguments)) for c in final.message.tool_calls or []]
    assert final.finish_reason == ("tool_calls" if calls else "stop"), final
    _check_reply(final.message.content or "", calls)


def test_openai_streamed_tool_call(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(model=QWEN, messages=QUESTION, tools=[WEATHER], temperature=0, seed=1,
                                         stream=True)
    chunks = list(stream)
    deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert deltas and deltas[0].index == 0 and CALL_ID.fullmatch(deltas[0].id or ""), deltas
    assert deltas[0].function is not None and deltas[0].function.name == "get_weather"
    arguments = "".join(d.function.arguments or "" for d in deltas if d.function is not None)
    assert json.loads(arguments) == {"city": "Paris"}
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ""
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


# -- a structured answer with a "name" key is not a call ------------------------------------------------
def test_format_answer_with_a_name_key_stays_content(native: ollama.Client, oai: openai.OpenAI) -> None:
    resp = native.chat(model=QWEN, messages=ALICE, tools=[WEATHER], format=PERSON,
                       options={**GREEDY, "num_predict": 60})
    assert not resp.message.tool_calls, resp
    person = json.loads(resp.message.content or "")
    assert isinstance(person, dict) and person.get("name") == "Alice", person

    answer = oai.chat.completions.create(
        model=QWEN, messages=ALICE, tools=[WEATHER], temperature=0, seed=1, max_tokens=60,
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}})
    choice = answer.choices[0]
    assert not choice.message.tool_calls and choice.finish_reason == "stop", choice
    assert json.loads(choice.message.content or "").get("name") == "Alice"
