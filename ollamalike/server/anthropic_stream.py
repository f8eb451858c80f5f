"""Anthropic Messages output: the ``message`` object, its SSE event sequence, and its error shape.

Pure functions and one small stateful encoder, no I/O. ``MessageStream`` turns one request's
native chat chunks into ``message_start``, ``ping``, ``content_block_start`` / ``_delta``
(``text_delta``, ``thinking_delta``, ``input_json_delta``) / ``_stop``, ``message_delta`` (stop
reason, usage) and ``message_stop``; ``message`` builds the same answer unstreamed. ``error_body``
is Anthropic's ``{"type": "error", "error": {"type", "message"}}`` with its error types.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from typing import Literal, TypedDict

from ollamalike.errors import OllamalikeError
from ollamalike.jsontypes import JSONObject
from ollamalike.server.chunk_fields import (
    Chunk,
    calls_of,
    count_of,
    done_reason_of,
    fold_chat,
    function_of,
    message_of,
    text_of,
)
from ollamalike.server.sse import Event
from ollamalike.server.tool_ids import tool_call_id

# Anthropic's error types by HTTP status. Its "overloaded" status is 529, which its clients retry.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}
OVERLOADED_STATUS = 529


def is_anthropic_path(path: str) -> bool:
    return path == "/v1/messages" or path.startswith("/v1/messages/")


def anthropic_status(status: int) -> int:
    """Our 503 (queue full, retry later) is what Anthropic calls 529 overloaded."""
    return OVERLOADED_STATUS if status == 503 else status


class ErrorDetail(TypedDict):
    type: str
    message: str


class ErrorBody(TypedDict):
    type: Literal["error"]
    error: ErrorDetail


class Usage(TypedDict):
    input_tokens: int
    output_tokens: int


class TextBlock(TypedDict):
    type: Literal["text"]
    text: str


class ThinkingBlock(TypedDict):
    type: Literal["thinking"]
    thinking: str
    signature: str


class ToolUseBlock(TypedDict):
    type: Literal["tool_use"]
    id: str
    name: str
    input: JSONObject


ContentBlock = TextBlock | ThinkingBlock | ToolUseBlock
StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use"]


class Message(TypedDict):
    """The ``message`` object (the SDK's ``anthropic.types.Message``)."""

    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    model: str
    content: list[ContentBlock]
    stop_reason: StopReason | None
    stop_sequence: str | None
    usage: Usage


def error_body(status: int, message: str) -> ErrorBody:
    kind = ERROR_TYPES.get(anthropic_status(status), "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def error_events(exc: OllamalikeError) -> list[Event]:
    """An error after the stream started: Anthropic's ``error`` event (its SDK raises it)."""
    return [("error", dict(error_body(exc.status, exc.message)))]


def new_message_id() -> str:
    return f"msg_{secrets.token_hex(12)}"


def stop_reason(done_reason: str | None, has_tool_use: bool, stop_sequence: str | None = None) -> StopReason:
    if has_tool_use:
        return "tool_use"
    if stop_sequence:
        return "stop_sequence"
    return "max_tokens" if done_reason == "length" else "end_turn"


def stop_sequence_of(final: object) -> str | None:
    """The stop sequence that ended the text: the inference layer's final chunk says (FinalChunk)."""
    matched = getattr(final, "stop_sequence", None)
    return matched if isinstance(matched, str) and matched else None


def usage(final: Chunk) -> Usage:
    return {"input_tokens": count_of(final, "prompt_eval_count"), "output_tokens": count_of(final, "eval_count")}


def tool_use_block(call: dict[str, object]) -> ToolUseBlock:
    name, args = function_of(call)
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            args = {}
    return {"type": "tool_use", "id": tool_call_id(call, "toolu_"), "name": name,
            "input": args if isinstance(args, dict) else {}}


def _envelope(msg_id: str, model: str, content: list[ContentBlock], stop: StopReason | None,
              used: Usage, stop_sequence: str | None = None) -> Message:
    return {"id": msg_id, "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": stop, "stop_sequence": stop_sequence if stop == "stop_sequence" else None, "usage": used}


def message(model: str, chunks: Sequence[Chunk]) -> Message:
    """The non-streamed ``message`` from every chunk of one request."""
    joined, thought, calls, final = fold_chat(chunks)
    content: list[ContentBlock] = []
    if thought:
        content.append({"type": "thinking", "thinking": thought, "signature": ""})
    if joined or not calls:
        content.append({"type": "text", "text": joined})
    content.extend(tool_use_block(c) for c in calls)
    matched = stop_sequence_of(final)
    return _envelope(new_message_id(), model, content, stop_reason(done_reason_of(final), bool(calls), matched),
                     usage(final), matched)


class MessageStream:
    """Encodes one request's native chat chunks as Anthropic's streaming events."""

    def __init__(self, model: str) -> None:
        self.id = new_message_id()
        self.model = model
        self.index = -1  # the index of the open content block, -1 before the first
        self.open: str | None = None  # its type ("text" / "thinking"), None when closed
        self.tool_uses = 0

    def opening(self) -> list[Event]:
        start = _envelope(self.id, self.model, [], None, {"input_tokens": 0, "output_tokens": 0})
        return [("message_start", {"type": "message_start", "message": start}), ("ping", {"type": "ping"})]

    def _close(self) -> list[Event]:
        if self.open is None:
            return []
        self.open = None
        return [("content_block_stop", {"type": "content_block_stop", "index": self.index})]

    def _start(self, block: ContentBlock) -> list[Event]:
        events = self._close()
        self.index += 1
        self.open = block["type"]
        events.append(("content_block_start", {"type": "content_block_start", "index": self.index,
                                               "content_block": block}))
        return events

    def _delta(self, kind: str, delta: dict[str, str]) -> list[Event]:
        empty: ContentBlock = {"type": "text", "text": ""} if kind == "text" else {
            "type": "thinking", "thinking": "", "signature": ""}
        events = [] if self.open == kind else self._start(empty)
        events.append(("content_block_delta", {"type": "content_block_delta", "index": self.index, "delta": delta}))
        return events

    def feed(self, chunk: Chunk) -> list[Event]:
        """The events (zero or more) that carry this native chunk."""
        msg = message_of(chunk)
        events: list[Event] = []
        if thinking := text_of(msg, "thinking"):
            events += self._delta("thinking", {"type": "thinking_delta", "thinking": thinking})
        if content := text_of(msg, "content"):
            events += self._delta("text", {"type": "text_delta", "text": content})
        for call in calls_of(msg):
            block = tool_use_block(call)
            events += self._start({**block, "input": {}})
            partial = json.dumps(block["input"], ensure_ascii=False, separators=(",", ":"))
            events.append(("content_block_delta", {"type": "content_block_delta", "index": self.index,
                                                   "delta": {"type": "input_json_delta", "partial_json": partial}}))
            events += self._close()
            self.tool_uses += 1
        if not chunk.get("done"):
            return events
        if self.index < 0:
            # Nothing was generated: still one (empty) text block, as a client reads content[0].
            events += self._start({"type": "text", "text": ""})
        events += self._close()
        matched = stop_sequence_of(chunk)
        reason = stop_reason(done_reason_of(chunk), self.tool_uses > 0, matched)
        delta = {"stop_reason": reason, "stop_sequence": matched if reason == "stop_sequence" else None}
        events.append(("message_delta", {"type": "message_delta", "delta": delta, "usage": usage(chunk)}))
        events.append(("message_stop", {"type": "message_stop"}))
        return events
