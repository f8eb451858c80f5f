"""OpenAI Responses output: the ``response`` object and its streaming events.

Pure functions and one stateful encoder, no I/O. The output items are ``reasoning`` (the model's
thinking, as ``reasoning_text`` content), ``message`` (``output_text`` content) and
``function_call`` (``call_id``, ``name``, ``arguments`` as a JSON string). ``ResponseStream``
emits ``response.created`` / ``.in_progress``, per item ``response.output_item.added``, its
deltas (``response.reasoning_text.delta``, ``response.output_text.delta``,
``response.function_call_arguments.delta``) and ``.done`` events, then ``response.completed``
(or ``response.incomplete`` when max_output_tokens cut it), every event with a sequence number.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from ollamalike.errors import OllamalikeError
from ollamalike.server.openai_fields import tool_arguments_json
from ollamalike.server.sse import Event
from ollamalike.server.tool_ids import tool_call_id


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def usage(final: dict[str, Any]) -> dict[str, Any]:
    prompt = int(final.get("prompt_eval_count") or 0)
    completion = int(final.get("eval_count") or 0)
    return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": completion, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + completion}


def reasoning_item(item_id: str, text: str) -> dict[str, Any]:
    return {"type": "reasoning", "id": item_id, "summary": [], "content": [{"type": "reasoning_text", "text": text}]}


def text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(item_id: str, text: str | None, status: str = "completed") -> dict[str, Any]:
    return {"type": "message", "id": item_id, "status": status, "role": "assistant",
            "content": [] if text is None else [text_part(text)]}


def function_call_item(call: dict[str, Any], status: str = "completed") -> dict[str, Any]:
    fn = call.get("function") or {}
    return {"type": "function_call", "id": new_id("fc"), "call_id": tool_call_id(call, "call_"),
            "name": fn.get("name", ""), "arguments": tool_arguments_json(fn.get("arguments")), "status": status}


class ResponseObject:
    """The ``response`` object's fixed fields (id, model, the request's echoed settings)."""

    def __init__(self, model: str, echo: dict[str, Any], previous_response_id: str | None, store: bool) -> None:
        self.id = new_id("resp")
        self.created_at = int(time.time())
        self.model = model
        self.echo = echo
        self.previous_response_id = previous_response_id
        self.store = store

    def build(self, status: str, output: list[dict[str, Any]], final: dict[str, Any] | None) -> dict[str, Any]:
        incomplete = status == "incomplete"
        return {
            "id": self.id, "object": "response", "created_at": self.created_at, "status": status,
            "error": None, "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
            "model": self.model, "output": output, "previous_response_id": self.previous_response_id,
            "store": self.store, "truncation": "disabled", "user": None,
            **self.echo,
            "usage": usage(final) if final is not None else None,
        }


def status_of(final: dict[str, Any]) -> str:
    return "incomplete" if final.get("done_reason") == "length" else "completed"


def response(obj: ResponseObject, chunks: list[dict[str, Any]]) -> tuple[dict[str, Any], str, str, list[dict[str, Any]]]:
    """The non-streamed ``response`` and the (text, thinking, calls) it produced, for the store."""
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
    output: list[dict[str, Any]] = []
    if any(thinking):
        output.append(reasoning_item(new_id("rs"), "".join(thinking)))
    joined = "".join(text)
    if joined or not calls:
        output.append(message_item(new_id("msg"), joined))
    output.extend(function_call_item(c) for c in calls)
    return obj.build(status_of(final), output, final), joined, "".join(thinking), calls


class ResponseStream:
    """Encodes one request's native chat chunks as Responses streaming events."""

    def __init__(self, obj: ResponseObject) -> None:
        self.obj = obj
        self.seq = 0
        self.output: list[dict[str, Any]] = []
        self.open: dict[str, Any] | None = None  # the reasoning or message item being streamed
        self.texts: list[str] = []
        self.thinking: list[str] = []
        self.calls: list[dict[str, Any]] = []
        self.final: dict[str, Any] | None = None

    def _event(self, kind: str, **fields: Any) -> Event:
        self.seq += 1
        return kind, {"type": kind, "sequence_number": self.seq - 1, **fields}

    def opening(self) -> list[Event]:
        snapshot = self.obj.build("in_progress", [], None)
        return [self._event("response.created", response=snapshot),
                self._event("response.in_progress", response=snapshot)]

    def _add(self, item: dict[str, Any]) -> list[Event]:
        self.output.append(item)
        return [self._event("response.output_item.added", output_index=len(self.output) - 1, item=item)]

    def _close(self) -> list[Event]:
        item, self.open = self.open, None
        if item is None:
            return []
        index = len(self.output) - 1
        if item["type"] == "reasoning":
            text = item["content"][0]["text"]
            events = [self._event("response.reasoning_text.done", item_id=item["id"], output_index=index,
                                  content_index=0, text=text)]
        else:
            item["status"] = "completed"
            part = item["content"][0]
            events = [self._event("response.output_text.done", item_id=item["id"], output_index=index,
                                  content_index=0, text=part["text"], logprobs=[]),
                      self._event("response.content_part.done", item_id=item["id"], output_index=index,
                                  content_index=0, part=part)]
        events.append(self._event("response.output_item.done", output_index=index, item=item))
        return events

    def _reasoning(self, delta: str) -> list[Event]:
        events: list[Event] = []
        if self.open is None or self.open["type"] != "reasoning":
            events += self._close()
            self.open = reasoning_item(new_id("rs"), "")
            events += self._add(self.open)
        self.open["content"][0]["text"] += delta
        self.thinking.append(delta)
        events.append(self._event("response.reasoning_text.delta", item_id=self.open["id"],
                                  output_index=len(self.output) - 1, content_index=0, delta=delta))
        return events

    def _text(self, delta: str) -> list[Event]:
        events: list[Event] = []
        if self.open is None or self.open["type"] != "message":
            events += self._close()
            self.open = message_item(new_id("msg"), None, status="in_progress")
            events += self._add(self.open)
            self.open["content"].append(text_part(""))
            events.append(self._event("response.content_part.added", item_id=self.open["id"],
                                      output_index=len(self.output) - 1, content_index=0, part=text_part("")))
        self.open["content"][0]["text"] += delta
        self.texts.append(delta)
        events.append(self._event("response.output_text.delta", item_id=self.open["id"],
                                  output_index=len(self.output) - 1, content_index=0, delta=delta, logprobs=[]))
        return events

    def _call(self, call: dict[str, Any]) -> list[Event]:
        events = self._close()
        done = function_call_item(call)
        events += self._add(dict(done, arguments="", status="in_progress"))
        index = len(self.output) - 1
        self.output[index] = done
        events.append(self._event("response.function_call_arguments.delta", item_id=done["id"],
                                  output_index=index, delta=done["arguments"]))
        events.append(self._event("response.function_call_arguments.done", item_id=done["id"],
                                  output_index=index, name=done["name"], arguments=done["arguments"]))
        events.append(self._event("response.output_item.done", output_index=index, item=done))
        self.calls.append(call)
        return events

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        msg = chunk.get("message") or {}
        events: list[Event] = []
        if msg.get("thinking"):
            events += self._reasoning(msg["thinking"])
        if msg.get("content"):
            events += self._text(msg["content"])
        for call in msg.get("tool_calls") or []:
            events += self._call(call)
        if not chunk.get("done"):
            return events
        if not self.output:
            events += self._text("")
        events += self._close()
        self.final = chunk
        status = status_of(chunk)
        done = self.obj.build(status, self.output, chunk)
        events.append(self._event(f"response.{status}", response=done))
        return events

    def error_events(self, exc: OllamalikeError) -> list[Event]:
        code = "server_error" if exc.status >= 500 else exc.openai_type
        return [self._event("error", code=code, message=exc.message, param=exc.param)]
