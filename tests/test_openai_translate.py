"""Unit tests of the /v1 translation: OpenAI request bodies -> inference requests, chunks -> OpenAI objects."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ollamalike.errors import BadRequest, ModelNotFound, Overloaded
from ollamalike.server import openai_responses as out
from ollamalike.server.openai_requests import (
    forced_tool_format,
    parse_chat_completion,
    parse_completion,
    parse_embedding,
)

PNG_B64 = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()
WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TIME: dict[str, Any] = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra}


# --- chat requests ------------------------------------------------------------------------------


def test_chat_minimal() -> None:
    t = parse_chat_completion(chat())
    assert t.request.model == "m"
    assert t.request.messages == [{"role": "user", "content": "hi"}]
    assert t.request.stream is False
    assert t.request.tools is None and t.request.format is None
    # Fields left out keep the model's Modelfile parameters: nothing forced.
    assert t.request.options == {}
    assert t.include_usage is False


@pytest.mark.parametrize(
    ("extra", "options"),
    [
        ({"temperature": 0.2, "top_p": 0.9}, {"temperature": 0.2, "top_p": 0.9}),
        ({"max_tokens": 12}, {"num_predict": 12}),
        ({"max_completion_tokens": 7, "max_tokens": 99}, {"num_predict": 7}),
        ({"stop": "END"}, {"stop": ["END"]}),
        ({"stop": ["a", "b"]}, {"stop": ["a", "b"]}),
        ({"seed": 42}, {"seed": 42}),
        ({"frequency_penalty": 0.5, "presence_penalty": -0.5}, {"frequency_penalty": 0.5, "presence_penalty": -0.5}),
        ({"options": {"num_ctx": 8192, "top_k": 5}}, {"num_ctx": 8192, "top_k": 5}),
        ({"num_ctx": 4096}, {"num_ctx": 4096}),
        ({"num_ctx": 4096, "options": {"num_ctx": 1024}}, {"num_ctx": 4096}),
        ({"temperature": 0.1, "options": {"temperature": 0.9}}, {"temperature": 0.1}),
        ({"n": 1, "user": "me", "parallel_tool_calls": True, "store": False, "logit_bias": {}, "logprobs": False}, {}),
    ],
)
def test_chat_sampling_fields_become_options(extra: dict[str, Any], options: dict[str, Any]) -> None:
    assert parse_chat_completion(chat(**extra)).request.options == options


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"n": 2}, "n"),
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": True}, "temperature"),
        ({"top_p": [1]}, "top_p"),
        ({"max_tokens": 1.5}, "max_tokens"),
        ({"max_tokens": -1}, "max_tokens"),
        ({"seed": "x"}, "seed"),
        ({"stop": 5}, "stop"),
        ({"stop": ["a", 1]}, "stop"),
        ({"stream": "yes"}, "stream"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"stream": True, "stream_options": "x"}, "stream_options"),
        ({"response_format": {"type": "xml"}}, "response_format"),
        ({"response_format": {"type": "json_schema"}}, "json_schema"),
        ({"response_format": "json"}, "response_format"),
        ({"options": "big"}, "options"),
        ({"options": {"num_ctx": "big"}}, "num_ctx"),
        ({"num_ctx": "big"}, "num_ctx"),
        ({"num_ctx": 0}, "num_ctx"),
        ({"keep_alive": "forever"}, "keep_alive"),
        ({"keep_alive": [1]}, "keep_alive"),
        ({"logprobs": "yes"}, "logprobs"),
        ({"top_logprobs": 3}, "requires 'logprobs'"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs must be between 0 and 20"),
        ({"logprobs": True, "top_logprobs": -1}, "top_logprobs must be between 0 and 20"),
        ({"logprobs": True, "top_logprobs": 2.5}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": "3"}, "top_logprobs"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"functions": [{"name": "f"}]}, "tools"),
        ({"function_call": "auto"}, "function_call"),
        ({"tools": {"a": 1}}, "tools"),
        ({"tools": [{"type": "retrieval"}]}, "tools[0]"),
        ({"tools": [{"type": "function", "function": {}}]}, "name"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "nope"),
        ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice"),
        ({"tools": [WEATHER], "tool_choice": "required", "response_format": {"type": "json_object"}}, "response_format"),
        ({"reasoning_effort": "extreme"}, "reasoning"),
        ({"model": 5}, "model"),
        ({"model": ""}, "model"),
        ({"messages": []}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": ["hi"]}, "messages[0]"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "role"),
        ({"messages": [{"role": "user"}]}, "content"),
        ({"messages": [{"role": "user", "content": 5}]}, "content"),
        ({"messages": [{"role": "user", "content": [{"type": "audio"}]}]}, "audio"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": 3}]}]}, "text"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]},
         "base64"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@"}}]}]},
         "base64"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}]}]},
         "image"),
        ({"messages": [{"role": "assistant", "content": None,
                        "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{bad"}}]}]},
         "arguments"),
        ({"messages": [{"role": "function", "content": "x"}]}, "function"),
    ],
)
def test_chat_bad_input_is_400(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_chat_completion(chat(**extra))
    assert info.value.status == 400
    assert message.lower() in info.value.message.lower()


def test_chat_model_missing() -> None:
    with pytest.raises(BadRequest, match="model"):
        parse_chat_completion({"messages": [{"role": "user", "content": "hi"}]})


def test_chat_messages_all_roles_and_content_parts() -> None:
    body = chat(messages=[
        {"role": "developer", "content": "be brief"},
        {"role": "system", "content": [{"type": "text", "text": "and kind"}]},
        {"role": "user", "content": [
            {"type": "text", "text": "what is"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
            {"type": "text", "text": "this?"},
        ]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "name": "explicit", "content": "x"},
        {"role": "assistant", "content": "It is sunny."},
    ])
    msgs = parse_chat_completion(body).request.messages
    assert msgs[0] == {"role": "system", "content": "be brief"}
    assert msgs[1] == {"role": "system", "content": "and kind"}
    assert msgs[2] == {"role": "user", "content": "what is\nthis?", "images": [PNG_B64]}
    assert msgs[3]["role"] == "assistant" and msgs[3]["content"] == ""
    assert msgs[3]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": {"city": "Paris"}}
    # The tool result is attributed to the function named by the call it answers.
    assert msgs[4]["tool_name"] == "get_weather" and msgs[4]["content"] == "sunny"
    assert msgs[5]["tool_name"] == "explicit"
    assert msgs[6] == {"role": "assistant", "content": "It is sunny."}


def test_chat_image_url_as_plain_string() -> None:
    body = chat(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": f"data:image/jpeg;base64,{PNG_B64}"}]}])
    assert parse_chat_completion(body).request.messages[0]["images"] == [PNG_B64]


def test_chat_response_format() -> None:
    assert parse_chat_completion(chat(response_format={"type": "json_object"})).request.format == "json"
    assert parse_chat_completion(chat(response_format={"type": "text"})).request.format is None
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    t = parse_chat_completion(chat(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}))
    assert t.request.format == schema


def test_chat_stream_and_usage() -> None:
    t = parse_chat_completion(chat(stream=True, stream_options={"include_usage": True}))
    assert t.request.stream is True and t.include_usage is True
    assert parse_chat_completion(chat(stream=True)).include_usage is False


def test_chat_keep_alive_and_reasoning() -> None:
    t = parse_chat_completion(chat(keep_alive="10m", reasoning_effort="low"))
    assert t.request.keep_alive == 600.0 and t.request.think == "low"
    assert parse_chat_completion(chat(keep_alive=-1)).request.keep_alive == -1.0
    assert parse_chat_completion(chat(reasoning={"effort": "none"})).request.think is False


def test_tool_choice() -> None:
    tools = [WEATHER, TIME]
    auto = parse_chat_completion(chat(tools=tools))
    assert [t["function"]["name"] for t in auto.request.tools or []] == ["get_weather", "get_time"]
    assert auto.request.format is None
    assert parse_chat_completion(chat(tools=tools, tool_choice="auto")).request.tools == auto.request.tools
    none = parse_chat_completion(chat(tools=tools, tool_choice="none"))
    assert none.request.tools is None and none.request.format is None
    required = parse_chat_completion(chat(tools=tools, tool_choice="required"))
    assert required.request.tools == auto.request.tools
    assert required.request.format == forced_tool_format(auto.request.tools or [])
    named = parse_chat_completion(chat(tools=tools, tool_choice={"type": "function", "function": {"name": "get_time"}}))
    assert [t["function"]["name"] for t in named.request.tools or []] == ["get_time"]
    assert named.request.format == {
        "type": "object",
        "properties": {"name": {"type": "string", "enum": ["get_time"]}, "arguments": TIME["function"]["parameters"]},
        "required": ["name", "arguments"],
    }


def test_forced_tool_format_validates_only_calls() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = forced_tool_format([WEATHER, TIME])
    jsonschema.validate({"name": "get_weather", "arguments": {"city": "Rome"}}, schema)
    jsonschema.validate({"name": "get_time", "arguments": {}}, schema)
    for bad in ({"name": "other", "arguments": {}}, {"name": "get_weather", "arguments": {}}, {"text": "hi"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


# --- completions and embeddings requests ---------------------------------------------------------


def test_completion_request() -> None:
    t = parse_completion({"model": "m", "prompt": "Once", "suffix": "end", "max_tokens": 5, "stop": ["\n"],
                          "temperature": 0, "stream": True, "stream_options": {"include_usage": True}})
    r = t.request
    assert (r.model, r.prompt, r.suffix, r.stream, t.include_usage) == ("m", "Once", "end", True, True)
    assert r.options == {"num_predict": 5, "stop": ["\n"], "temperature": 0}
    assert parse_completion({"model": "m", "prompt": ["only one"]}).request.prompt == "only one"
    assert parse_completion({"model": "m", "prompt": "x", "echo": False}).request.prompt == "x"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"prompt": "x", "echo": True}, "echo"),
        ({"prompt": "x", "n": 3}, "n"),
        ({"prompt": "x", "best_of": 2}, "best_of"),
        ({"prompt": "x", "logprobs": 21}, "logprobs must be between 0 and 20"),
        ({"prompt": "x", "logprobs": -1}, "logprobs must be between 0 and 20"),
        ({"prompt": "x", "logprobs": True}, "logprobs"),
        ({"prompt": "x", "logprobs": "2"}, "logprobs"),
        ({"prompt": "x", "logit_bias": {"1": 2}}, "logit_bias"),
        ({"prompt": ["a", "b"]}, "one prompt"),
        ({"prompt": [1, 2, 3]}, "token"),
        ({"prompt": 7}, "prompt"),
        ({"prompt": "x", "suffix": 1}, "suffix"),
        ({"prompt": "x", "max_tokens": "5"}, "max_tokens"),
        ({"prompt": "x", "options": {"num_ctx": [1]}}, "num_ctx"),
    ],
)
def test_completion_bad_input_is_400(body: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_completion({"model": "m", **body})
    assert message.lower() in info.value.message.lower()


def test_embedding_request() -> None:
    t = parse_embedding({"model": "e", "input": "hello"})
    assert t.request.input == ["hello"] and t.encoding_format == "float"
    t = parse_embedding({"model": "e", "input": ["a", "b"], "encoding_format": "base64", "dimensions": 8,
                         "options": {"num_ctx": 256}})
    assert t.request.input == ["a", "b"] and t.encoding_format == "base64"
    assert t.request.dimensions == 8 and t.request.options == {"num_ctx": 256}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "input"),
        ({"input": []}, "input"),
        ({"input": 5}, "input"),
        ({"input": ["a", 5]}, "input"),
        ({"input": [1, 2]}, "token"),
        ({"input": [[1, 2]]}, "token"),
        ({"input": ["a", ""]}, "empty"),
        ({"input": "a", "encoding_format": "int8"}, "encoding_format"),
        ({"input": "a", "dimensions": 0}, "dimensions"),
    ],
)
def test_embedding_bad_input_is_400(body: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_embedding({"model": "e", **body})
    assert message.lower() in info.value.message.lower()


# --- responses -------------------------------------------------------------------------------------


def final(**extra: Any) -> dict[str, Any]:
    return {"model": "m", "done": True, "done_reason": "stop", "prompt_eval_count": 11, "eval_count": 3,
            "message": {"role": "assistant", "content": ""}, **extra}


def piece(text: str) -> dict[str, Any]:
    return {"model": "m", "done": False, "message": {"role": "assistant", "content": text}}


def test_chat_completion_object() -> None:
    obj = out.chat_completion("my-model", [piece("Hel"), piece("lo"), final(done_reason="length")])
    assert obj["id"].startswith("chatcmpl-") and obj["object"] == "chat.completion"
    assert obj["model"] == "my-model" and isinstance(obj["created"], int)
    assert obj["system_fingerprint"].startswith("fp_")
    assert obj["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "Hello"},
                               "logprobs": None, "finish_reason": "length"}]
    assert obj["usage"] == {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14,
                            "prompt_tokens_details": {"cached_tokens": 0}}


def test_chat_completion_tool_calls() -> None:
    call = {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    chunk = {"model": "m", "done": False, "message": {"role": "assistant", "content": "", "tool_calls": [call]}}
    obj = out.chat_completion("m", [chunk, final()])
    choice = obj["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    (tc,) = choice["message"]["tool_calls"]
    assert tc["id"].startswith("call_") and tc["type"] == "function" and tc["index"] == 0
    assert tc["function"]["name"] == "get_weather"
    assert isinstance(tc["function"]["arguments"], str)
    assert json.loads(tc["function"]["arguments"]) == {"city": "Paris"}
    # An id chosen upstream is kept.
    kept = out.openai_tool_calls([{"id": "call_abc", "function": {"name": "f", "arguments": {}}}])
    assert kept[0]["id"] == "call_abc" and kept[0]["function"]["arguments"] == "{}"


def test_chat_stream_chunks() -> None:
    enc = out.ChatStream("m", include_usage=True)
    events = [e for c in (piece("Hi"), piece(""), piece(" there"), final()) for e in enc.feed(c)]
    assert all(e["object"] == "chat.completion.chunk" and e["id"] == enc.id for e in events)
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": "Hi"}
    assert events[1]["choices"][0]["delta"] == {"content": " there"}
    assert events[2]["choices"][0]["finish_reason"] == "stop"
    assert events[2]["choices"][0]["delta"] == {}
    assert events[3]["choices"] == [] and events[3]["usage"] == {
        "prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14, "prompt_tokens_details": {"cached_tokens": 0}}
    assert len(events) == 4


def test_usage_says_the_cached_part_of_the_prompt() -> None:
    # The inference service's final chunk carries cached_tokens as an attribute (no Ollama field).
    from ollamalike.inference.service import FinalChunk

    last = FinalChunk(final())
    last.cached_tokens = 10
    assert "cached_tokens" not in last
    obj = out.chat_completion("m", [piece("Hi"), last])
    assert obj["usage"]["prompt_tokens"] == 11 and obj["usage"]["prompt_tokens_details"] == {"cached_tokens": 10}
    enc = out.ChatStream("m", include_usage=True)
    events = [e for c in (piece("Hi"), last) for e in enc.feed(c)]
    assert events[-1]["usage"]["prompt_tokens_details"] == {"cached_tokens": 10}


def test_chat_stream_first_chunk_has_role_even_when_empty_and_tool_calls_finish() -> None:
    enc = out.ChatStream("m", include_usage=False)
    call = {"function": {"name": "f", "arguments": {"x": 1}}}
    first = enc.feed({"model": "m", "done": False, "message": {"role": "assistant", "content": ""}})
    assert first[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    calls = enc.feed({"model": "m", "done": False, "message": {"role": "assistant", "content": "", "tool_calls": [call, call]}})
    deltas = calls[0]["choices"][0]["delta"]["tool_calls"]
    assert [d["index"] for d in deltas] == [0, 1] and deltas[0]["function"]["arguments"] == '{"x":1}'
    end = enc.feed(final())
    assert len(end) == 1 and end[0]["choices"][0]["finish_reason"] == "tool_calls"


def test_reasoning_is_carried_in_stream_and_answer() -> None:
    thought = {"model": "m", "done": False, "message": {"role": "assistant", "content": "", "thinking": "hmm"}}
    enc = out.ChatStream("m", include_usage=False)
    (first,) = enc.feed(thought)
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": "", "reasoning": "hmm"}
    obj = out.chat_completion("m", [thought, piece("42"), final()])
    assert obj["choices"][0]["message"] == {"role": "assistant", "content": "42", "reasoning": "hmm"}


def test_completion_objects() -> None:
    chunks = [{"response": "a", "done": False}, {"response": "b", "done": False},
              {"response": "", "done": True, "done_reason": "stop", "prompt_eval_count": 2, "eval_count": 2}]
    obj = out.completion("m", chunks)
    assert obj["id"].startswith("cmpl-") and obj["object"] == "text_completion"
    assert obj["choices"] == [{"text": "ab", "index": 0, "logprobs": None, "finish_reason": "stop"}]
    assert obj["usage"]["total_tokens"] == 4
    enc = out.CompletionStream("m", include_usage=True)
    events = [e for c in chunks for e in enc.feed(c)]
    assert [e["choices"][0]["text"] for e in events[:3]] == ["a", "b", ""]
    assert events[2]["choices"][0]["finish_reason"] == "stop" and events[3]["choices"] == []
    quiet = out.CompletionStream("m", include_usage=False)
    assert sum(len(quiet.feed(c)) for c in chunks) == 3


def test_embedding_list_float_and_base64() -> None:
    result = {"embeddings": [[0.5, -1.25, 3.0], [0.1, 0.2, 0.3]], "prompt_eval_count": 6}
    floats = out.embedding_list("e", result, "float")
    assert floats["object"] == "list" and floats["model"] == "e"
    assert [d["index"] for d in floats["data"]] == [0, 1]
    assert floats["data"][0] == {"object": "embedding", "embedding": [0.5, -1.25, 3.0], "index": 0}
    assert floats["usage"] == {"prompt_tokens": 6, "total_tokens": 6}
    b64 = out.embedding_list("e", result, "base64")
    raw = base64.b64decode(b64["data"][0]["embedding"])
    assert struct.unpack("<3f", raw) == (0.5, -1.25, 3.0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-05-01T12:00:00Z", 1714564800),
        ("2024-05-01T12:00:00.123456789Z", 1714564800),
        ("2024-05-01T14:00:00.5+02:00", 1714564800),
        ("2024-05-01T12:00:00", 1714564800),
        (1714564800, 1714564800),
        ("garbage", 0),
        (None, 0),
    ],
)
def test_unix_seconds(value: Any, expected: int) -> None:
    assert out.unix_seconds(value) == expected


def test_model_object() -> None:
    entry = {"name": "tiny:latest", "model": "tiny:latest", "modified_at": "2024-05-01T12:00:00Z", "size": 1}
    assert out.model_object(entry) == {"id": "tiny:latest", "object": "model", "created": 1714564800, "owned_by": "library"}
    assert out.model_object({"name": "alice/tiny:q4"})["owned_by"] == "alice"
    assert out.model_object({"name": "hf.co/bob/repo:Q4_0"})["owned_by"] == "bob"


def test_error_object() -> None:
    err = out.error_object(404, "model 'x' not found", ModelNotFound("x"))
    assert err == {"error": {"message": "model 'x' not found", "type": "invalid_request_error", "param": None,
                             "code": "model_not_found"}}
    assert out.error_object(503, "busy", Overloaded("busy"))["error"]["type"] == "server_error"
    assert out.error_object(500, "boom")["error"]["type"] == "server_error"


# --- robustness: any JSON body is either translated or a BadRequest, never another exception --------

_scalars = st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False, width=32) | st.text(max_size=5)
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                     max_leaves=8)
_part = st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url", "audio"])},
                              optional={"text": _json, "image_url": _json})
_msg = st.fixed_dictionaries({}, optional={
    "role": st.sampled_from(["system", "user", "assistant", "tool", "developer", "x"]) | _json,
    "content": st.text(max_size=5) | st.lists(_part, max_size=2) | _json,
    "tool_calls": _json, "tool_call_id": _json, "name": _json,
})
_fields = {name: _json for name in (
    "temperature", "top_p", "max_tokens", "max_completion_tokens", "stop", "seed", "n", "stream", "stream_options",
    "response_format", "tools", "tool_choice", "options", "num_ctx", "keep_alive", "prompt", "suffix", "echo",
    "input", "encoding_format", "dimensions", "logprobs", "reasoning_effort")}
_bodies = st.fixed_dictionaries({"model": st.just("m") | _json}, optional={"messages": st.lists(_msg, max_size=3) | _json,
                                                                             **_fields})


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_bodies)
def test_any_body_is_translated_or_rejected_cleanly(body: dict[str, Any]) -> None:
    for parse in (parse_chat_completion, parse_completion, parse_embedding):
        try:
            parse(body)
        except BadRequest as e:
            assert e.message.strip()
