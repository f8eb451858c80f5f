"""``GenericParser``: thinking tags (template.thinking) then JSON tool calls (template.tools).

This is what a chat without a named parser has always used: the ``<think>`` splitter when thinking
is on, and the tool-call parser of the model's template tag plus the well-known ones (Hermes
``<tool_call>``, Mistral ``[TOOL_CALLS]`` in both forms, Llama 3.1 ``<|python_tag|>`` and bare JSON,
Command R's ``Action:``), only counting calls of the offered tools. The named JSON families
(``llama3``, ``mistral``, ``ministral``, ``command-r``, ``granite``) are this parser with their own
tags.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from ollamalike.template.parsers.base import Content, Event, Thinking, ToolCall
from ollamalike.template.thinking import ThinkingParser
from ollamalike.template.toolformats import Tag
from ollamalike.template.tools import ToolParser


def _events(thinking: str, content: str) -> list[Event]:
    out: list[Event] = []
    if thinking:
        out.append(Thinking(thinking))
    if content:
        out.append(Content(content))
    return out


class GenericParser:
    """An ``OutputParser`` over the thinking splitter and the JSON tool-call parser."""

    def __init__(self, think: ThinkingParser | None, tags: Sequence[Tag] | None,
                 names: Collection[str] | None) -> None:
        self.think = think
        self.tools = ToolParser(tags, names) if tags is not None else None

    def _tools(self, content: str, final: bool) -> list[Event]:
        if self.tools is None:
            return [Content(content)] if content else []
        text, calls = self.tools.feed(content) if content else ("", [])
        if final:
            rest, more = self.tools.flush()
            text, calls = text + rest, calls + more
        out: list[Event] = [Content(text)] if text else []
        for call in calls:
            fn = call["function"]
            out.append(ToolCall(str(fn["name"]), dict(fn["arguments"])))
        return out

    def feed(self, text: str) -> list[Event]:
        thinking, content = self.think.feed(text) if self.think else ("", text)
        return _events(thinking, "") + self._tools(content, final=False)

    def finish(self) -> list[Event]:
        thinking, content = self.think.flush() if self.think else ("", "")
        return _events(thinking, "") + self._tools(content, final=True)
