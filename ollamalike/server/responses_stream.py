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
from collections.abc import Sequence
from typing import Literal, TypedDict

from ollamalike.errors import OllamalikeError
from ollamalike.jsontypes import JSONValue
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
from ollamalike.server.openai_fields import tool_arguments_json
from ollamalike.server.responses_requests import ResponseEcho
from ollamalike.server.sse import Event
from ollamalike.server.tool_ids import tool_call_id

Status = Literal["completed", "incomplete", "in_progress"]


class InputTokensDetails(TypedDict):
    cached_tokens: int


class OutputTokensDetails(TypedDict):
    reasoning_tokens: int


class Usage(TypedDict):
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int


class ReasoningText(TypedDict):
    type: Literal["reasoning_text"]
    text: str


class ReasoningItem(TypedDict):
    type: Literal["reasoning"]
    id: str
    summary: list[JSONValue]
    content: list[ReasoningText]


class OutputText(TypedDict):
    type: Literal["output_text"]
    text: str
    annotations: list[JSONValue]
    logprobs: list[JSONValue]


class MessageItem(TypedDict):
    type: Literal["message"]
    id: str
    status: Status
    role: Literal["assistant"]
    content: list[OutputText]


class FunctionCallItem(TypedDict):
    type: Literal["function_call"]
    id: str
    call_id: str
    name: str
    arguments: str
    status: Status


OutputItem = ReasoningItem | MessageItem | FunctionCallItem


class IncompleteDetails(TypedDict):
    reason: Literal["max_output_tokens"]


class Response(ResponseEcho):
    """The ``response`` object (the SDK's ``openai.types.responses.Response``)."""

    id: str
    object: Literal["response"]
    created_at: int
    status: Status
    error: None
    incomplete_details: IncompleteDetails | None
    model: str
    output: list[OutputItem]
    previous_response_id: str | None
    store: bool
    truncation: Literal["disabled"]
    user: None
    usage: Usage | None


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def usage(final: Chunk) -> Usage:
    prompt = count_of(final, "prompt_eval_count")
    completion = count_of(final, "eval_count")
    return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": completion, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + completion}


def reasoning_item(item_id: str, text: str) -> ReasoningItem:
    return {"type": "reasoning", "id": item_id, "summary": [], "content": [{"type": "reasoning_text", "text": text}]}


def text_part(text: str) -> OutputText:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(item_id: str, text: str | None, status: Status = "completed") -> MessageItem:
    return {"type": "message", "id": item_id, "status": status, "role": "assistant",
            "content": [] if text is None else [text_part(text)]}


def function_call_item(call: dict[str, object], status: Status = "completed") -> FunctionCallItem:
    name, arguments = function_of(call)
    return {"type": "function_call", "id": new_id("fc"), "call_id": tool_call_id(call, "call_"),
            "name": name, "arguments": tool_arguments_json(arguments), "status": status}


class ResponseObject:
    """The ``response`` object's fixed fields (id, model, the request's echoed settings)."""

    def __init__(self, model: str, echo: ResponseEcho, previous_response_id: str | None, store: bool) -> None:
        self.id = new_id("resp")
        self.created_at = int(time.time())
        self.model = model
        self.echo = echo
        self.previous_response_id = previous_response_id
        self.store = store

    def build(self, status: Status, output: list[OutputItem], final: Chunk | None) -> Response:
        incomplete = status == "incomplete"
        return {
            "id": self.id, "object": "response", "created_at": self.created_at, "status": status,
            "error": None, "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
            "model": self.model, "output": output, "previous_response_id": self.previous_response_id,
            "store": self.store, "truncation": "disabled", "user": None,
            **self.echo,
            "usage": usage(final) if final is not None else None,
        }


def status_of(final: Chunk) -> Status:
    return "incomplete" if done_reason_of(final) == "length" else "completed"


def response(obj: ResponseObject, chunks: Sequence[Chunk]) -> tuple[Response, str, str, list[dict[str, object]]]:
    """The non-streamed ``response`` and the (text, thinking, calls) it produced, for the store."""
    joined, thought, calls, final = fold_chat(chunks)
    output: list[OutputItem] = []
    if thought:
        output.append(reasoning_item(new_id("rs"), thought))
    if joined or not calls:
        output.append(message_item(new_id("msg"), joined))
    output.extend(function_call_item(c) for c in calls)
    return obj.build(status_of(final), output, final), joined, thought, calls


class ResponseStream:
    """Encodes one request's native chat chunks as Responses streaming events."""

    def __init__(self, obj: ResponseObject) -> None:
        self.obj = obj
        self.seq = 0
        self.output: list[OutputItem] = []
        self.open: ReasoningItem | MessageItem | None = None  # the reasoning or message item being streamed
        self.texts: list[str] = []
        self.thinking: list[str] = []
        self.calls: list[dict[str, object]] = []
        self.final: Chunk | None = None

    def _event(self, kind: str, **fields: object) -> Event:
        self.seq += 1
        return kind, {"type": kind, "sequence_number": self.seq - 1, **fields}

    def opening(self) -> list[Event]:
        snapshot = self.obj.build("in_progress", [], None)
        return [self._event("response.created", response=snapshot),
                self._event("response.in_progress", response=snapshot)]

    def _add(self, item: OutputItem) -> list[Event]:
        self.output.append(item)
        return [self._event("response.output_item.added", output_index=len(self.output) - 1, item=item)]

    def _close(self) -> list[Event]:
        item, self.open = self.open, None
        if item is None:
            return []
        index = len(self.output) - 1
        events: list[Event]
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
        item = self.open
        if item is None or item["type"] != "reasoning":
            events += self._close()
            item = self.open = reasoning_item(new_id("rs"), "")
            events += self._add(item)
        item["content"][0]["text"] += delta
        self.thinking.append(delta)
        events.append(self._event("response.reasoning_text.delta", item_id=item["id"],
                                  output_index=len(self.output) - 1, content_index=0, delta=delta))
        return events

    def _text(self, delta: str) -> list[Event]:
        events: list[Event] = []
        item = self.open
        if item is None or item["type"] != "message":
            events += self._close()
            item = self.open = message_item(new_id("msg"), None, status="in_progress")
            events += self._add(item)
            item["content"].append(text_part(""))
            events.append(self._event("response.content_part.added", item_id=item["id"],
                                      output_index=len(self.output) - 1, content_index=0, part=text_part("")))
        item["content"][0]["text"] += delta
        self.texts.append(delta)
        events.append(self._event("response.output_text.delta", item_id=item["id"],
                                  output_index=len(self.output) - 1, content_index=0, delta=delta, logprobs=[]))
        return events

    def _call(self, call: dict[str, object]) -> list[Event]:
        events = self._close()
        done = function_call_item(call)
        events += self._add({**done, "arguments": "", "status": "in_progress"})
        index = len(self.output) - 1
        self.output[index] = done
        events.append(self._event("response.function_call_arguments.delta", item_id=done["id"],
                                  output_index=index, delta=done["arguments"]))
        events.append(self._event("response.function_call_arguments.done", item_id=done["id"],
                                  output_index=index, name=done["name"], arguments=done["arguments"]))
        events.append(self._event("response.output_item.done", output_index=index, item=done))
        self.calls.append(call)
        return events

    def feed(self, chunk: Chunk) -> list[Event]:
        msg = message_of(chunk)
        events: list[Event] = []
        if thinking := text_of(msg, "thinking"):
            events += self._reasoning(thinking)
        if content := text_of(msg, "content"):
            events += self._text(content)
        for call in calls_of(msg):
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
