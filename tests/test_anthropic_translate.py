"""Unit tests of the Anthropic Messages translation (pure functions, no daemon): request blocks into the
native ``ChatRequest``, and native chunks into the ``message`` object and its event sequence, including
the thinking and tool-call paths a tiny random model cannot produce on its own."""

from __future__ import annotations

from typing import Any

import pytest

from ollamalike.errors import BadRequest
from ollamalike.server.anthropic_requests import parse_messages
from ollamalike.server.anthropic_stream import MessageStream, error_body, message

TOOL = {"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}


def _body(**extra: Any) -> dict[str, Any]:
    return {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}], **extra}


def test_blocks_become_native_messages() -> None:
    req = parse_messages(_body(
        system=[{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind.", "cache_control": {}}],
        tools=[TOOL], stop_sequences=["END"], temperature=0.2, top_k=5,
        thinking={"type": "enabled", "budget_tokens": 2000},
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "call it", "signature": "x"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "-3C"}]},
                {"type": "text", "text": "And now?"}]},
        ]))
    assert req.messages == [
        {"role": "system", "content": "Be brief.\n\nBe kind."},
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "Checking.", "thinking": "call it",
         "tool_calls": [{"id": "toolu_1", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]},
        {"role": "tool", "content": "-3C", "tool_name": "get_weather", "tool_call_id": "toolu_1"},
        {"role": "user", "content": "And now?"},
    ]
    assert req.tools == [{"type": "function", "function": {"name": "get_weather", "parameters": TOOL["input_schema"]}}]
    assert req.options["stop"] == ["END"] and req.options["num_predict"] == 10
    assert req.options["temperature"] == 0.2 and req.options["top_k"] == 5
    assert req.think is True and req.format is None and req.stream is False


def test_tool_result_error_and_forced_choice() -> None:
    req = parse_messages(_body(tools=[TOOL], tool_choice={"type": "tool", "name": "get_weather"}, messages=[
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "get_weather", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "boom", "is_error": True}]}]))
    assert req.messages[-1]["content"] == "Error: boom"
    assert isinstance(req.format, dict) and req.format["properties"]["name"]["enum"] == ["get_weather"]
    assert parse_messages(_body(tools=[TOOL], tool_choice={"type": "none"})).tools is None
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert parse_messages(_body(output_config={"format": {"type": "json_schema", "schema": schema}})).format == schema


def test_tool_result_must_answer_the_previous_assistant_message() -> None:
    stale = [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]},
        {"role": "assistant", "content": "done"},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "again"}]},
    ]
    with pytest.raises(BadRequest, match="t1"):
        parse_messages(_body(messages=stale))


def test_count_only_needs_no_max_tokens() -> None:
    body = _body()
    del body["max_tokens"]
    assert parse_messages(body, count_only=True).options.get("num_predict") is None
    with pytest.raises(BadRequest, match="max_tokens"):
        parse_messages(body)


def _chunk(content: str = "", thinking: str = "", calls: Any = None, done: bool = False, **final: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking:
        msg["thinking"] = thinking
    if calls:
        msg["tool_calls"] = calls
    return {"model": "m", "message": msg, "done": done, **final}


CHUNKS = [
    _chunk(thinking="Let me "), _chunk(thinking="think."), _chunk(content="Calling"),
    _chunk(calls=[{"id": "call_abc", "function": {"name": "f", "arguments": {"x": 1}}},
                  {"function": {"name": "g", "arguments": {}}}]),
    _chunk(done=True, done_reason="stop", prompt_eval_count=7, eval_count=9),
]


def test_stream_events_thinking_text_and_tool_use() -> None:
    enc = MessageStream("m")
    events = enc.opening() + [e for c in CHUNKS for e in enc.feed(c)]
    kinds = [(name, data.get("index"), (data.get("delta") or data.get("content_block") or {}).get("type"))
             for name, data in events]
    assert kinds == [
        ("message_start", None, None), ("ping", None, None),
        ("content_block_start", 0, "thinking"), ("content_block_delta", 0, "thinking_delta"),
        ("content_block_delta", 0, "thinking_delta"), ("content_block_stop", 0, None),
        ("content_block_start", 1, "text"), ("content_block_delta", 1, "text_delta"), ("content_block_stop", 1, None),
        ("content_block_start", 2, "tool_use"), ("content_block_delta", 2, "input_json_delta"),
        ("content_block_stop", 2, None),
        ("content_block_start", 3, "tool_use"), ("content_block_delta", 3, "input_json_delta"),
        ("content_block_stop", 3, None),
        ("message_delta", None, None), ("message_stop", None, None),
    ]
    starts = [d["content_block"] for n, d in events if n == "content_block_start" and d["content_block"]["type"] == "tool_use"]
    assert starts[0]["id"] == "call_abc"  # the native id is kept
    assert starts[1]["id"].startswith("toolu_")  # minted only when the chunk has none
    assert events[10][1]["delta"]["partial_json"] == '{"x":1}'
    assert events[-2][1] == {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                             "usage": {"input_tokens": 7, "output_tokens": 9}}


def test_unstreamed_message_and_empty_answer() -> None:
    msg = message("m", CHUNKS)
    assert [b["type"] for b in msg["content"]] == ["thinking", "text", "tool_use", "tool_use"]
    assert msg["content"][0]["thinking"] == "Let me think." and msg["content"][2]["input"] == {"x": 1}
    assert msg["stop_reason"] == "tool_use" and msg["usage"] == {"input_tokens": 7, "output_tokens": 9}
    empty = message("m", [_chunk(done=True, done_reason="length", eval_count=3)])
    assert empty["content"] == [{"type": "text", "text": ""}] and empty["stop_reason"] == "max_tokens"
    enc = MessageStream("m")
    names = [n for n, _ in enc.feed(_chunk(done=True, done_reason="stop"))]
    assert names == ["content_block_start", "content_block_stop", "message_delta", "message_stop"]


@pytest.mark.parametrize(("status", "kind", "shown"), [
    (400, "invalid_request_error", 400), (401, "authentication_error", 401), (404, "not_found_error", 404),
    (413, "request_too_large", 413), (503, "overloaded_error", 529), (500, "api_error", 500), (502, "api_error", 502)])
def test_error_types(status: int, kind: str, shown: int) -> None:
    from ollamalike.server.anthropic_stream import anthropic_status

    assert error_body(status, "m") == {"type": "error", "error": {"type": kind, "message": "m"}}
    assert anthropic_status(status) == shown


def test_a_matched_stop_sequence_is_reported() -> None:
    from ollamalike.inference.chunks import FinalChunk
    from ollamalike.runner.sampling import TextStream

    text = TextStream(["OP", "ST"])
    out = "".join(text.push(p) for p in (b"fir", b"st STOP", b" more"))
    assert out == "first " and text.stopped and text.matched == "ST"  # the earliest match wins
    assert TextStream([]).matched is None

    final = FinalChunk({"model": "m", "done": True, "done_reason": "stop", "prompt_eval_count": 3, "eval_count": 2,
                        "message": {"role": "assistant", "content": ""}})
    final.stop_sequence = "STOP"
    chunks: list[dict[str, Any]] = [{"message": {"role": "assistant", "content": "go "}, "done": False}, final]
    body = message("m", chunks)
    assert body["stop_reason"] == "stop_sequence" and body["stop_sequence"] == "STOP"
    stream = MessageStream("m")
    events = [e for c in chunks for e in stream.feed(c)]
    deltas = [d for name, d in events if name == "message_delta"]
    assert deltas and deltas[-1]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "STOP"}
    plain = FinalChunk(final)
    assert message("m", [plain])["stop_reason"] == "end_turn" and message("m", [plain])["stop_sequence"] is None
