"""Tool calls out of a chat's streamed content (``<think>`` splitting is template.ThinkingParser).

``ToolStream`` runs the content of one chat with tools through the model's streaming tool-call
parser (template.tools.ToolParser): content goes on at once but for a possible partial call tag,
each call of an offered tool comes out as soon as it is complete, carrying an ``id`` as Ollama's
do (``call_`` and 8 random characters), which clients send back as a tool result's ``tool_call_id``.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ollamalike.template.tools import ToolParser, tags_for, tool_names
from ollamalike.template.values import Tool, ToolCall

if TYPE_CHECKING:
    from ollamalike.template.render import ModelLike

_ID_ALPHABET = string.ascii_lowercase + string.digits


def new_call_id() -> str:
    return "call_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


class ToolStream:
    """``feed(text)`` / ``flush()`` -> (content, calls); calls are ``{"id", "function": {"index",
    "name", "arguments"}}``, of the offered ``tools`` only (any other JSON stays content)."""

    def __init__(self, model: ModelLike, tools: Sequence[Tool]) -> None:
        self.parser = ToolParser(tags_for(model), tool_names(list(tools)))

    @staticmethod
    def _with_ids(calls: list[ToolCall]) -> list[ToolCall]:
        return [{"id": new_call_id(), "function": call["function"]} for call in calls]

    def feed(self, text: str) -> tuple[str, list[ToolCall]]:
        content, calls = self.parser.feed(text)
        return content, self._with_ids(calls)

    def flush(self) -> tuple[str, list[ToolCall]]:
        content, calls = self.parser.flush()
        return content, self._with_ids(calls)
