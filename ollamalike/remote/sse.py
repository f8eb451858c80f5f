"""The engine's streamed answer: server-sent events (``data: {...}`` … ``data: [DONE]``) read into
typed ``Delta`` values, and a stream's tool-call fragments joined into Ollama's tool calls.

Both OpenAI stream shapes are read: chat (``choices[0].delta``: ``content``, ``reasoning_content``
or ``reasoning`` for thinking, ``tool_calls`` fragments) and completions (``choices[0].text``); the
last chunk's ``usage`` (``stream_options.include_usage``) carries the engine's token counts. An
``{"error": ...}`` event in the stream (vLLM and llama-server send one) ends it with an EngineError.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from ollamalike.errors import EngineError
from ollamalike.jsontypes import JSONObject, JSONValue

# One SSE line may be a whole (large) chunk, never unbounded: a runaway engine cannot exhaust memory.
MAX_EVENT_BYTES = 8 << 20


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0


@dataclass(frozen=True)
class ToolCallPiece:
    index: int
    id: str
    name: str
    arguments: str  # a fragment of the arguments' JSON text


@dataclass(frozen=True)
class Delta:
    content: str = ""
    thinking: str = ""
    tool_calls: tuple[ToolCallPiece, ...] = ()
    finish_reason: str | None = None
    usage: Usage | None = None


async def data_lines(lines: AsyncIterator[bytes], label: str) -> AsyncIterator[JSONObject]:
    """The JSON objects of an SSE stream's ``data:`` events, up to ``[DONE]`` or the end."""
    buffer: list[str] = []
    size = 0
    async for raw in lines:
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if line.startswith("data:"):
            piece = line[5:].removeprefix(" ")
            size += len(piece)
            if size > MAX_EVENT_BYTES:
                raise EngineError(f"{label} sent an event larger than {MAX_EVENT_BYTES} bytes")
            buffer.append(piece)
            continue
        if line or not buffer:
            continue  # "event:", "id:", ": comment" lines, or blank lines between events
        data, buffer, size = "\n".join(buffer), [], 0
        if data.strip() == "[DONE]":
            return
        yield _decode(data, label)
    if buffer and "\n".join(buffer).strip() != "[DONE]":
        yield _decode("\n".join(buffer), label)


def _decode(data: str, label: str) -> JSONObject:
    try:
        obj: JSONValue = json.loads(data)
    except ValueError:
        raise EngineError(f"{label} sent an event that is not JSON: {data[:120]!r}") from None
    if not isinstance(obj, dict):
        raise EngineError(f"{label} sent an event that is not a JSON object")
    error = obj.get("error")
    if error is not None:
        raise EngineError(f"{label} failed mid-stream: {error_text(error)}")
    return obj


def error_text(error: JSONValue) -> str:
    """The message of an OpenAI-style error (``{"message": ...}`` or a plain string)."""
    if isinstance(error, dict):
        message = error.get("message")
        if isinstance(message, str) and message:
            return message
        return json.dumps(error)[:300]
    return str(error)[:300]


def _int(obj: JSONObject, name: str) -> int:
    value = obj.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def usage_of(obj: JSONValue) -> Usage | None:
    if not isinstance(obj, dict):
        return None
    details = obj.get("prompt_tokens_details")
    cached = _int(details, "cached_tokens") if isinstance(details, dict) else 0
    return Usage(prompt_tokens=_int(obj, "prompt_tokens"), completion_tokens=_int(obj, "completion_tokens"),
                 cached_tokens=cached)


def _str(obj: JSONObject, name: str) -> str:
    value = obj.get(name)
    return value if isinstance(value, str) else ""


def delta_of(obj: JSONObject) -> Delta:
    """One chunk of a chat or completions stream (or a whole non-streamed answer's first choice)."""
    usage = usage_of(obj.get("usage"))
    choices = obj.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    finish = choice.get("finish_reason")
    delta = choice.get("delta")
    if not isinstance(delta, dict):
        delta = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    assert isinstance(delta, dict)
    content = _str(delta, "content") or _str(choice, "text")
    thinking = _str(delta, "reasoning_content") or _str(delta, "reasoning")
    pieces: list[ToolCallPiece] = []
    calls = delta.get("tool_calls")
    for n, call in enumerate(calls if isinstance(calls, list) else []):
        if not isinstance(call, dict):
            continue
        fn = call.get("function")
        fn = fn if isinstance(fn, dict) else {}
        index = call.get("index")
        args = fn.get("arguments")
        pieces.append(ToolCallPiece(
            index=index if isinstance(index, int) and not isinstance(index, bool) else n,
            id=_str(call, "id"), name=_str(fn, "name"),
            arguments=args if isinstance(args, str) else json.dumps(args) if isinstance(args, dict) else ""))
    return Delta(content=content, thinking=thinking, tool_calls=tuple(pieces),
                 finish_reason=finish if isinstance(finish, str) else None, usage=usage)


@dataclass
class _Call:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class ToolCalls:
    """Tool-call fragments of one stream, joined per index into Ollama's tool calls."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._calls: dict[int, _Call] = {}

    def feed(self, pieces: tuple[ToolCallPiece, ...]) -> None:
        for piece in pieces:
            call = self._calls.setdefault(piece.index, _Call())
            call.id = call.id or piece.id
            call.name = call.name or piece.name
            call.arguments.append(piece.arguments)

    def calls(self) -> list[JSONObject]:
        """``{"id", "function": {"index", "name", "arguments": {...}}}`` in index order."""
        out: list[JSONObject] = []
        for position, (_, call) in enumerate(sorted(self._calls.items())):
            text = "".join(call.arguments).strip() or "{}"
            try:
                arguments: JSONValue = json.loads(text)
            except ValueError:
                raise EngineError(f"{self.label} sent tool call arguments that are not JSON: {text[:120]!r}") from None
            if not isinstance(arguments, dict):
                raise EngineError(f"{self.label} sent tool call arguments that are not a JSON object")
            function: JSONObject = {"index": position, "name": call.name, "arguments": arguments}
            entry: JSONObject = {"id": call.id, "function": function} if call.id else {"function": function}
            out.append(entry)
        return out
