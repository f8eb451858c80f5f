"""Parsing inference request bodies: defaults, normalisation and one clear error per bad field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ollamalike import library
from ollamalike.errors import BadRequest, ModelNotFound
from ollamalike.inference import (
    parse_chat_request,
    parse_embed_request,
    parse_embeddings_request,
    parse_generate_request,
)
from ollamalike.names import ModelName
from ollamalike.store import Store


def test_generate_defaults_and_fields() -> None:
    req = parse_generate_request({"model": "m"})
    assert (req.prompt, req.stream, req.raw, req.keep_alive, req.format, req.options, req.context) == (
        "", True, False, None, None, {}, None)
    req = parse_generate_request({
        "model": "m", "prompt": "hi", "suffix": "end", "system": "s", "template": "{{ .Prompt }}", "raw": True,
        "context": [1, 2, 3], "format": "json", "options": {"temperature": 0.5, "num_ctx": 256, "bogus": 1},
        "stream": False, "keep_alive": "10m", "think": True,
    })
    assert req.prompt == "hi" and req.suffix == "end" and req.system == "s" and req.raw
    assert req.context == [1, 2, 3] and req.format == "json" and not req.stream
    assert req.keep_alive == 600 and req.think is True
    assert req.options == {"temperature": 0.5, "num_ctx": 256}  # unknown options are ignored, as Ollama does


@pytest.mark.parametrize(
    "value, seconds",
    [("5m", 300), (0, 0), ("0", 0), (-1, -1), ("-1m", -60), (90, 90), ("1h30m", 5400), (2.5, 2.5), (None, None)],
)
def test_keep_alive_values(value: Any, seconds: float | None) -> None:
    assert parse_generate_request({"model": "m", "keep_alive": value}).keep_alive == seconds


def test_format_schema_and_think_levels() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert parse_chat_request({"model": "m", "format": schema}).format == schema
    assert parse_chat_request({"model": "m", "format": ""}).format is None
    assert parse_chat_request({"model": "m", "think": "HIGH"}).think == "high"


@pytest.mark.parametrize(
    "body, message",
    [
        # A body that is no object ([]) is rejected at the HTTP edge (read_json), before the
        # parser: tests/test_server_models.py::test_bad_bodies_are_400 keeps that case.
        ({}, "model is required"),
        ({"model": 3}, "invalid value for 'model': expected a string, got a number"),
        ({"model": "m", "prompt": 5}, "invalid value for 'prompt': expected a string, got a number"),
        ({"model": "m", "stream": "yes"}, "invalid value for 'stream': expected a boolean, got a string"),
        ({"model": "m", "raw": 1}, "invalid value for 'raw': expected a boolean, got a number"),
        ({"model": "m", "context": "1,2"}, "context"),
        ({"model": "m", "context": [1, "a"]}, "context"),
        ({"model": "m", "format": "xml"}, "invalid format"),
        ({"model": "m", "format": 7}, "format"),
        ({"model": "m", "keep_alive": "soon"}, "keep_alive"),
        ({"model": "m", "keep_alive": True}, "keep_alive"),
        ({"model": "m", "think": "extreme"}, "think"),
        ({"model": "m", "options": []}, "invalid value for 'options': expected an object, got an array"),
        ({"model": "m", "options": {"temperature": "hot"}}, "temperature"),
        ({"model": "m", "options": {"num_ctx": -1}}, "num_ctx"),
        ({"model": "m", "options": {"stop": 5}}, "stop"),
        ({"model": "m", "images": "abc"}, "images"),
    ],
)
def test_generate_bad_input(body: Any, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        parse_generate_request(body)


def test_chat_messages_are_normalised() -> None:
    req = parse_chat_request({
        "model": "m",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": None,
             "tool_calls": [{"function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
            {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
    })
    assert [m["role"] for m in req.messages] == ["system", "user", "assistant", "tool"]
    assert req.messages[2] == {"role": "assistant", "content": "",
                               "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}
    assert req.messages[3]["tool_name"] == "get_weather"
    assert req.tools is not None and req.tools[0]["function"]["name"] == "get_weather"
    assert parse_chat_request({"model": "m"}).messages == []


@pytest.mark.parametrize(
    "body, message",
    [
        ({"model": "m", "messages": "hi"}, "invalid value for 'messages': expected an array of message objects, got a string"),
        ({"model": "m", "messages": ["hi"]}, r"messages\[0\]"),
        ({"model": "m", "messages": [{"content": "x"}]}, "role is required"),
        ({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}, "invalid role"),
        ({"model": "m", "messages": [{"role": "user", "content": 5}]}, "content must be a string"),
        ({"model": "m", "messages": [{"role": "assistant", "tool_calls": {}}]}, "tool_calls must be a list"),
        ({"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"function": {}}]}]}, "name"),
        ({"model": "m", "messages": [{"role": "assistant",
                                      "tool_calls": [{"function": {"name": "f", "arguments": "[1"}}]}]}, "arguments"),
        ({"model": "m", "tools": {}}, "invalid value for 'tools': expected an array of tool definitions, got an object"),
        ({"model": "m", "tools": [{"type": "function"}]}, r"tools\[0\]"),
        ({"model": "m", "tools": [{"type": "retrieval", "function": {"name": "f"}}]}, "type"),
    ],
)
def test_chat_bad_input(body: Any, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        parse_chat_request(body)


def test_embed_requests() -> None:
    assert parse_embed_request({"model": "m", "input": "a"}).input == ["a"]
    req = parse_embed_request({"model": "m", "input": ["a", "b"], "truncate": False, "dimensions": 8})
    assert (req.input, req.truncate, req.dimensions) == (["a", "b"], False, 8)
    assert parse_embed_request({"model": "m"}).input == []
    assert parse_embeddings_request({"model": "m", "prompt": "x"}).input == ["x"]
    assert parse_embeddings_request({"model": "m", "prompt": ""}).input == []
    for body, message in [
        ({"model": "m", "input": 5}, "invalid value for 'input': expected a string or an array of strings, got a number"),
        ({"model": "m", "input": ["a", 1]}, "input"),
        ({"model": "m", "input": "a", "dimensions": 0}, "dimensions"),
        ({"model": "m", "input": "a", "dimensions": "8"}, "dimensions"),
        ({"model": "m", "input": "a", "truncate": "no"}, "truncate"),
    ]:
        with pytest.raises(BadRequest, match=message):
            parse_embed_request(body)


def test_the_model_name_is_parsed_once_when_the_request_is_built(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 19: the request carries its parsed ``ModelName``; resolving it parses nothing again and
    the not-found error still names the model as the client spelled it."""
    req = parse_chat_request({"model": "Ghost:7B"})
    assert req.model == "Ghost:7B"
    assert req.name == ModelName("registry.ollama.ai", "library", "Ghost", "7B")
    assert parse_generate_request({"model": "ns/m"}).name.namespace == "ns"
    assert parse_embed_request({"model": "m", "input": "a"}).name.tag == "latest"

    store = Store(tmp_path / "models")

    def no_second_parse(text: str) -> ModelName:
        raise AssertionError(f"{text!r} parsed again")

    monkeypatch.setattr(ModelName, "parse", staticmethod(no_second_parse))
    with pytest.raises(ModelNotFound, match="model 'Ghost:7B' not found"):
        library.resolve_model(store, req.name)
