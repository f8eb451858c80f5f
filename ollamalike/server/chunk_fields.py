"""Reading the native chat/generate chunks (``inference.chat``/``generate``) in the API translations.

The chunks are plain dicts the inference layer builds; the translations (OpenAI, Anthropic,
Responses) read a few fields of them through these narrowing getters, which take the missing or
empty field as the chunk's own default ("" text, no calls, zero counts).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

Chunk = Mapping[str, object]


def message_of(chunk: Chunk) -> Chunk:
    """A chat chunk's ``message`` ({} when it has none)."""
    msg = chunk.get("message")
    return msg if isinstance(msg, Mapping) else {}


def text_of(fields: Chunk, name: str) -> str:
    """A text field of a chunk or message ("" when missing or null)."""
    value = fields.get(name)
    return value if isinstance(value, str) else ""


def calls_of(msg: Chunk) -> list[dict[str, object]]:
    """A message's ``tool_calls`` (the dicts themselves: ``tool_ids`` stores a minted id on them)."""
    calls = msg.get("tool_calls")
    return [c for c in calls if isinstance(c, dict)] if isinstance(calls, list) else []


def count_of(final: Chunk, name: str) -> int:
    """A token count or duration of the final chunk (0 when missing)."""
    value = final.get(name)
    return int(value) if isinstance(value, (int, float)) else 0


def done_reason_of(final: Chunk) -> str | None:
    value = final.get("done_reason")
    return value if isinstance(value, str) else None


def function_of(call: Chunk) -> tuple[str, object]:
    """A tool call's (function name, arguments); ("", None) when it has no function object."""
    fn = call.get("function")
    if not isinstance(fn, Mapping):
        return "", None
    name = fn.get("name", "")
    return name if isinstance(name, str) else "", fn.get("arguments")


def fold_chat(chunks: Sequence[Chunk]) -> tuple[str, str, list[dict[str, object]], Chunk]:
    """A chat stream's chunks joined: (content, thinking, tool calls, the final chunk)."""
    text: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, object]] = []
    final: Chunk = {}
    for chunk in chunks:
        msg = message_of(chunk)
        text.append(text_of(msg, "content"))
        thinking.append(text_of(msg, "thinking"))
        calls.extend(calls_of(msg))
        if chunk.get("done"):
            final = chunk
    return "".join(text), "".join(thinking), calls, final
