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
from typing import Any

from ollamalike.errors import OllamalikeError
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


def error_body(status: int, message: str) -> dict[str, Any]:
    kind = ERROR_TYPES.get(anthropic_status(status), "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def error_events(exc: OllamalikeError) -> list[Event]:
    """An error after the stream started: Anthropic's ``error`` event (its SDK raises it)."""
    return [("error", error_body(exc.status, exc.message))]


def new_message_id() -> str:
    return f"msg_{secrets.token_hex(12)}"


def stop_reason(done_reason: str | None, has_tool_use: bool) -> str:
    # The runner reports a stop sequence and the end of turn alike as "stop": both are end_turn.
    if has_tool_use:
        return "tool_use"
    return "max_tokens" if done_reason == "length" else "end_turn"


def usage(final: dict[str, Any]) -> dict[str, int]:
    return {"input_tokens": int(final.get("prompt_eval_count") or 0), "output_tokens": int(final.get("eval_count") or 0)}


def tool_use_block(call: dict[str, Any]) -> dict[str, Any]:
    fn = call.get("function") or {}
    args = fn.get("arguments")
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            args = {}
    return {"type": "tool_use", "id": tool_call_id(call, "toolu_"), "name": fn.get("name", ""),
            "input": args if isinstance(args, dict) else {}}


def _envelope(msg_id: str, model: str) -> dict[str, Any]:
    return {"id": msg_id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None}


def message(model: str, chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """The non-streamed ``message`` from every chunk of one request."""
    text: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    final: dict[str, Any] = {}
    for chunk in chunks:
        msg = chunk.get("message") or {}
        text.append(msg.get("content") or "")
        thinking.append(msg.get("thinking") or "")
        calls.extend(msg.get("tool_calls") or [])
        if chunk.get("done"):
            final = chunk
    content: list[dict[str, Any]] = []
    if any(thinking):
        content.append({"type": "thinking", "thinking": "".join(thinking), "signature": ""})
    joined = "".join(text)
    if joined or not calls:
        content.append({"type": "text", "text": joined})
    content.extend(tool_use_block(c) for c in calls)
    out = _envelope(new_message_id(), model)
    out.update(content=content, stop_reason=stop_reason(final.get("done_reason"), bool(calls)), usage=usage(final))
    return out


class MessageStream:
    """Encodes one request's native chat chunks as Anthropic's streaming events."""

    def __init__(self, model: str) -> None:
        self.id = new_message_id()
        self.model = model
        self.index = -1  # the index of the open content block, -1 before the first
        self.open: str | None = None  # its type ("text" / "thinking"), None when closed
        self.tool_uses = 0

    def opening(self) -> list[Event]:
        start = dict(_envelope(self.id, self.model), usage={"input_tokens": 0, "output_tokens": 0})
        return [("message_start", {"type": "message_start", "message": start}), ("ping", {"type": "ping"})]

    def _close(self) -> list[Event]:
        if self.open is None:
            return []
        self.open = None
        return [("content_block_stop", {"type": "content_block_stop", "index": self.index})]

    def _start(self, block: dict[str, Any]) -> list[Event]:
        events = self._close()
        self.index += 1
        self.open = block["type"]
        events.append(("content_block_start", {"type": "content_block_start", "index": self.index,
                                               "content_block": block}))
        return events

    def _delta(self, kind: str, delta: dict[str, Any]) -> list[Event]:
        events = [] if self.open == kind else self._start(
            {"type": "text", "text": ""} if kind == "text" else {"type": "thinking", "thinking": "", "signature": ""})
        events.append(("content_block_delta", {"type": "content_block_delta", "index": self.index, "delta": delta}))
        return events

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        """The events (zero or more) that carry this native chunk."""
        msg = chunk.get("message") or {}
        events: list[Event] = []
        if msg.get("thinking"):
            events += self._delta("thinking", {"type": "thinking_delta", "thinking": msg["thinking"]})
        if msg.get("content"):
            events += self._delta("text", {"type": "text_delta", "text": msg["content"]})
        for call in msg.get("tool_calls") or []:
            block = tool_use_block(call)
            events += self._start(dict(block, input={}))
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
        delta = {"stop_reason": stop_reason(chunk.get("done_reason"), self.tool_uses > 0), "stop_sequence": None}
        events.append(("message_delta", {"type": "message_delta", "delta": delta, "usage": usage(chunk)}))
        events.append(("message_stop", {"type": "message_stop"}))
        return events
