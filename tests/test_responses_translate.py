"""Unit tests of the Responses translation (pure functions, no daemon): input items into native
messages, chained history, and native chunks into the ``response`` object and its event sequence,
including reasoning and function calls a tiny random model cannot produce on its own."""

from __future__ import annotations

from typing import Any

import pytest

from ollamalike.errors import BadRequest
from ollamalike.server.responses_requests import output_messages, parse_response_request
from ollamalike.server.responses_stream import ResponseObject, ResponseStream, response

TOOL = {"type": "function", "name": "f", "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}}}


def test_input_items_become_native_messages() -> None:
    history = [{"role": "user", "content": "earlier"}, {"role": "assistant", "content": "",
               "tool_calls": [{"id": "call_old", "function": {"name": "f", "arguments": {"x": 0}}}]}]
    t = parse_response_request({
        "model": "m", "instructions": "Be brief.", "tools": [TOOL], "reasoning": {"effort": "xhigh"},
        "max_output_tokens": 20, "temperature": 0.1, "store": False,
        "input": [
            {"type": "function_call_output", "call_id": "call_old", "output": "zero"},
            {"role": "developer", "content": "Rules."},
            {"role": "user", "content": [{"type": "input_text", "text": "a"}, {"type": "input_text", "text": "b"}]},
            {"type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": "hmm"}]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Calling."}]},
            {"type": "function_call", "call_id": "call_new", "name": "f", "arguments": "{\"x\": 2}"},
            {"type": "function_call_output", "call_id": "call_new", "output": "two"},
        ]}, history)
    req = t.request
    assert req.messages == [
        {"role": "system", "content": "Be brief."},
        *history,
        {"role": "tool", "content": "zero", "tool_name": "f", "tool_call_id": "call_old"},
        {"role": "system", "content": "Rules."},
        {"role": "user", "content": "a\nb"},
        {"role": "assistant", "content": "Calling.", "thinking": "hmm",
         "tool_calls": [{"id": "call_new", "function": {"name": "f", "arguments": {"x": 2}}}]},
        {"role": "tool", "content": "two", "tool_name": "f", "tool_call_id": "call_new"},
    ]
    # What is stored for a follow-up excludes the instructions (OpenAI does not carry them over).
    assert t.input_messages == req.messages[3:]
    assert req.think == "max" and req.options["num_predict"] == 20 and req.options["temperature"] == 0.1
    assert t.store is False and t.echo["instructions"] == "Be brief."


def test_forced_choice_and_format() -> None:
    forced = parse_response_request({"model": "m", "input": "x", "tools": [TOOL], "tool_choice": "required"}, [])
    assert isinstance(forced.request.format, dict) and forced.request.format["properties"]["name"]["enum"] == ["f"]
    with pytest.raises(BadRequest, match="text.format"):
        parse_response_request({"model": "m", "input": "x", "tools": [TOOL], "tool_choice": "required",
                                "text": {"format": {"type": "json_object"}}}, [])
    plain = parse_response_request({"model": "m", "input": "x", "text": {"format": {"type": "json_object"}},
                                    "reasoning": {"effort": "none"}}, [])
    assert plain.request.format == "json" and plain.request.think is False


def _chunk(content: str = "", thinking: str = "", calls: Any = None, done: bool = False, **final: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking:
        msg["thinking"] = thinking
    if calls:
        msg["tool_calls"] = calls
    return {"model": "m", "message": msg, "done": done, **final}


CHUNKS = [
    _chunk(thinking="hm"), _chunk(content="Hel"), _chunk(content="lo"),
    _chunk(calls=[{"id": "call_1", "function": {"name": "f", "arguments": {"x": 1}}}]),
    _chunk(done=True, done_reason="length", prompt_eval_count=5, eval_count=4),
]


def test_stream_events() -> None:
    obj = ResponseObject("m", {"tools": []}, None, True)
    enc = ResponseStream(obj)
    events = enc.opening() + [e for c in CHUNKS for e in enc.feed(c)]
    assert [n for n, _ in events] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.reasoning_text.delta", "response.reasoning_text.done",
        "response.output_item.done",
        "response.output_item.added", "response.content_part.added", "response.output_text.delta",
        "response.output_text.delta", "response.output_text.done", "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.incomplete",
    ]
    assert [d["sequence_number"] for _, d in events] == list(range(len(events)))
    final = events[-1][1]["response"]
    assert [i["type"] for i in final["output"]] == ["reasoning", "message", "function_call"]
    assert final["output"][1]["content"][0]["text"] == "Hello"
    assert final["output"][2]["call_id"] == "call_1" and final["output"][2]["arguments"] == '{"x":1}'
    assert final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["usage"]["total_tokens"] == 9
    assert "".join(enc.texts) == "Hello" and enc.calls[0]["id"] == "call_1"


def test_unstreamed_response_and_stored_turn() -> None:
    obj = ResponseObject("m", {}, "resp_prev", True)
    answer, text, thinking, calls = response(obj, CHUNKS)
    assert answer["status"] == "incomplete" and answer["previous_response_id"] == "resp_prev"
    assert [i["type"] for i in answer["output"]] == ["reasoning", "message", "function_call"]
    assert output_messages(text, thinking, calls) == [{"role": "assistant", "content": "Hello", "thinking": "hm",
        "tool_calls": [{"id": "call_1", "function": {"name": "f", "arguments": {"x": 1}}}]}]
    # An id-less native call gets one minted, the same in the output and in the stored turn.
    idless = [_chunk(calls=[{"function": {"name": "f", "arguments": {}}}]), _chunk(done=True)]
    answer, text, thinking, calls = response(ResponseObject("m", {}, None, True), idless)
    minted = answer["output"][0]["call_id"]
    assert minted.startswith("call_") and output_messages(text, thinking, calls)[0]["tool_calls"][0]["id"] == minted
