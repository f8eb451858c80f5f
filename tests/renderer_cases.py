"""Conversations for the built-in renderer tests (messages already in the checked ``Message`` shape)."""

from __future__ import annotations

from typing import Any

from ollamalike.template.values import Message, Tool


def msg(role: str, content: str = "", **extra: Any) -> Message:
    out: dict[str, Any] = {"role": role, "content": content, "tool_calls": extra.pop("calls", [])}
    out.update(extra)
    return out  # type: ignore[return-value]


def call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"function": {"name": name, "arguments": arguments}}


# A tool whose description needs Go's HTML escaping in JSON, and a property key ("default") that
# Ollama's api.ToolProperty does not have (so no renderer prints it).
TOOLS: list[Tool] = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather <now> & soon", "parameters": {
        "type": "object", "required": ["city"], "properties": {
            "city": {"type": "string", "description": "City name"},
            "unit": {"type": "string", "enum": ["c", "f"], "default": "c"}}}}}]

# System, user, an assistant turn with reasoning, text and two calls, then two tool results.
TOOL_CHAT: list[Message] = [
    msg("system", "Be terse."), msg("user", "Weather in Paris & Rome?"),
    msg("assistant", "Checking.", thinking="use the tool",
        calls=[call("get_weather", city="Paris", unit="c"), call("get_weather", city="Rome", days=[1, 2])]),
    msg("tool", "18C"), msg("tool", "windy"),
]

# An earlier answer with reasoning, then a new question.
THINK_CHAT: list[Message] = [msg("user", "2+2?"), msg("assistant", "4", thinking="easy"), msg("user", "3+3?")]

# A trailing assistant message: the answer continues it.
PREFILL_CHAT: list[Message] = [msg("user", "Haiku"), msg("assistant", "Autumn")]
