"""The native message shape the agent API translations (Anthropic, Responses) build from client
input, before ``inference.requests.parse_message`` checks it as the native API does."""

from __future__ import annotations

from typing import Literal, TypedDict

from ollamalike.jsontypes import JSONObject


class NativeFunction(TypedDict):
    name: str
    arguments: str | JSONObject  # Responses sends a JSON string; parse_message decodes it


class NativeToolCall(TypedDict):
    id: str
    function: NativeFunction


class _MessageHead(TypedDict):
    role: Literal["system", "user", "assistant", "tool"]
    content: str


class NativeMessage(_MessageHead, total=False):
    images: list[str]
    thinking: str
    tool_calls: list[NativeToolCall]
    tool_name: str
    tool_call_id: str
