"""What every output parser shares: the events it yields, the context it starts from, the Protocol.

An output parser is fed a model's generated text as it streams and yields ``Content``, ``Thinking``
and ``ToolCall`` events in the order they occur. Whatever may still turn into a tag (the end of the
text held so far matching the start of one) is held back until the next ``feed`` or ``finish``, so
that no part of a tag or of a call is ever yielded as content.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeAlias

from ollamalike.jsontypes import JSONObject, JSONValue

Think: TypeAlias = bool | str | None  # a request's ``think``: None (unset), a bool, or a level


@dataclass(frozen=True)
class Content:
    text: str


@dataclass(frozen=True)
class Thinking:
    text: str


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: JSONObject


Event: TypeAlias = Content | Thinking | ToolCall


@dataclass(frozen=True)
class ParserContext:
    """What a parser is started with: the offered tools (untrusted JSON, as the request had them),
    the request's ``think``, and the rendered prompt (whether it already opened a thinking block)."""

    tools: Sequence[JSONValue] = ()
    think: Think = None
    prompt: str = ""
    param_types: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    @staticmethod
    def create(tools: object = None, think: Think = None, prompt: str = "") -> ParserContext:
        offered: list[JSONValue] = [t for t in tools if _is_json(t)] if isinstance(tools, list) else []
        return ParserContext(tuple(offered), think, prompt, _param_types(offered))

    def tool_names(self) -> set[str]:
        return set(self.param_types)

    def prompt_ends_with(self, tag: str) -> bool:
        return bool(tag) and self.prompt.rstrip().endswith(tag)


def _is_json(value: object) -> bool:
    return value is None or isinstance(value, (bool, int, float, str, list, dict))


def _param_types(tools: list[JSONValue]) -> dict[str, dict[str, list[str]]]:
    """tool name -> parameter name -> the JSON-schema types it may have (``anyOf`` flattened)."""
    out: dict[str, dict[str, list[str]]] = {}
    for tool in tools:
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            continue
        name = fn["name"]
        assert isinstance(name, str)
        params = fn.get("parameters")
        props = params.get("properties") if isinstance(params, dict) else None
        types: dict[str, list[str]] = {}
        if isinstance(props, dict):
            for pname, prop in props.items():
                types[pname] = _schema_types(prop)
        out[name] = types
    return out


def _schema_types(prop: JSONValue) -> list[str]:
    if not isinstance(prop, dict):
        return []
    variants = prop.get("anyOf")
    if isinstance(variants, list):
        return [t for v in variants for t in _schema_types(v)]
    kind = prop.get("type")
    if isinstance(kind, str):
        return [kind]
    if isinstance(kind, list):
        return [k for k in kind if isinstance(k, str)]
    return []


class OutputParser(Protocol):
    """A streaming parser of one model output: ``feed`` each generated piece, ``finish`` at the end."""

    def feed(self, text: str) -> list[Event]: ...

    def finish(self) -> list[Event]: ...


def overlap(text: str, tag: str) -> int:
    """Length of the longest end of ``text`` that is a proper start of ``tag``."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


def merge(events: Sequence[Event]) -> tuple[str, str, list[ToolCall]]:
    """(content, thinking, calls) of a run of events."""
    content = "".join(e.text for e in events if isinstance(e, Content))
    thinking = "".join(e.text for e in events if isinstance(e, Thinking))
    return content, thinking, [e for e in events if isinstance(e, ToolCall)]


def coalesce(events: Sequence[Event]) -> list[Event]:
    """Adjacent content (or thinking) events joined, empty ones dropped: for comparing streams."""
    out: list[Event] = []
    for e in events:
        if isinstance(e, (Content, Thinking)):
            if not e.text:
                continue
            if out and type(out[-1]) is type(e):
                prev = out[-1]
                assert isinstance(prev, (Content, Thinking))
                out[-1] = type(e)(prev.text + e.text)
                continue
        out.append(e)
    return out
