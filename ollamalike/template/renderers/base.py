"""What every built-in renderer shares: the ``Renderer`` signature, the think value, and the JSON
forms Ollama's renderers print (Go's ``encoding/json`` over Ollama's ``api`` types).

Ollama decodes a request's tools into typed structs (``api.Tool``, ``api.ToolProperty``) before a
renderer marshals them, so the JSON a model sees has those structs' field order, drops keys the
structs do not have (a property's ``default``, ``minimum`` …), keeps the client's order of
``properties`` and tool-call ``arguments`` (ordered maps) and sorts every other map's keys. The
helpers here build that shape from our checked ``Tool``/``Message`` dicts, as ``govalues.Struct``s
that ``go_json`` encodes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeAlias

from ollamalike.template.govalues import GoValue, Struct, fmt_v, go_json
from ollamalike.template.values import Message, Tool, ToolCall

Think: TypeAlias = bool | str | None  # a request's ``think``: None (unset), a bool, or a level
# One renderer: the conversation (model SYSTEM and MESSAGE history already in it), the request's
# tools and its think value -> the prompt text.
Renderer: TypeAlias = Callable[[list[Message], list[Tool], Think], str]

IM_START, IM_END = "<|im_start|>", "<|im_end|>"


def think_on(think: Think, default: bool = False) -> bool:
    """Ollama's ``ThinkValue.Bool()``: a level counts as on; unset gives the renderer's default."""
    if think is None:
        return default
    if isinstance(think, bool):
        return think
    return think != ""


def thinking_of(m: Message) -> str:
    value = m.get("thinking")
    return value if isinstance(value, str) else ""


def ordered(d: Mapping[str, GoValue]) -> Struct:
    """An ordered map (Ollama's ``orderedmap``): encodes its keys in insertion order."""
    return Struct("orderedmap", dict(d), [(k, v, False) for k, v in d.items()])


def arguments(call: ToolCall) -> Struct:
    return ordered(call["function"]["arguments"])


def _property(p: GoValue) -> GoValue:
    return tool_property(p) if isinstance(p, Mapping) else p


def tool_property(p: Mapping[str, GoValue]) -> Struct:
    """One parameter schema as ``api.ToolProperty`` (keys the struct lacks are dropped)."""
    props = p.get("properties")
    any_of = p.get("anyOf")
    return Struct("api.ToolProperty", {}, [
        ("anyOf", [_property(x) for x in any_of] if isinstance(any_of, list) else None, True),
        ("type", p.get("type"), True),
        ("items", p.get("items"), True),
        ("description", p.get("description") or "", True),
        ("enum", p.get("enum") if isinstance(p.get("enum"), list) else None, True),
        ("properties", _properties(props) if isinstance(props, Mapping) else None, True),
        ("required", p.get("required") if isinstance(p.get("required"), list) else None, True),
    ])


def _properties(props: Mapping[str, GoValue]) -> Struct:
    return ordered({k: _property(v) for k, v in props.items()})


def parameters(tool: Tool) -> Struct:
    """``api.ToolFunctionParameters`` of a tool (``properties`` always present, null when absent)."""
    params: Mapping[str, GoValue] = tool["function"].get("parameters") or {}
    props = params.get("properties")
    return Struct("api.ToolFunctionParameters", {}, [
        ("type", params.get("type") or "", False),
        ("$defs", params.get("$defs"), True),
        ("items", params.get("items"), True),
        ("required", params.get("required") if isinstance(params.get("required"), list) else None, True),
        ("properties", _properties(props) if isinstance(props, Mapping) else None, False),
    ])


def property_fields(tool: Tool) -> list[tuple[str, Mapping[str, GoValue]]]:
    """A tool's parameter properties in the client's order, each as the object the client sent."""
    params: Mapping[str, GoValue] = tool["function"].get("parameters") or {}
    props = params.get("properties")
    if not isinstance(props, Mapping):
        return []
    return [(k, v if isinstance(v, Mapping) else {}) for k, v in props.items()]


def api_tool(tool: Tool) -> Struct:
    """``api.Tool`` as Ollama marshals it."""
    fn = tool["function"]
    description = fn.get("description")
    function = Struct("api.ToolFunction", {}, [
        ("name", fn["name"], False),
        ("description", description if isinstance(description, str) else "", True),
        ("parameters", parameters(tool), False),
    ])
    return Struct("api.Tool", {}, [
        ("type", tool.get("type") or "", False), ("items", tool.get("items"), True), ("function", function, False)])


def description_of(tool: Tool) -> str:
    value = tool["function"].get("description")
    return value if isinstance(value, str) else ""


def spaced(compact: str, keep_existing: bool = False) -> str:
    """Compact JSON with a space after every ``:`` and ``,`` outside strings (Python's json.dumps look);
    ``keep_existing``: none where whitespace already follows."""
    out: list[str] = []
    in_str = escaped = False
    for i, ch in enumerate(compact):
        out.append(ch)
        if in_str:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in ":," and not (keep_existing and (i + 1 == len(compact) or compact[i + 1] in " \n\r\t")):
            out.append(" ")
    return "".join(out)


def indented(compact: str, step: str = "    ") -> str:
    """Go's ``json.MarshalIndent(v, "", step)`` of compact JSON (``{}`` and ``[]`` stay on one line)."""
    out: list[str] = []
    depth = 0
    in_str = escaped = False
    i = 0
    while i < len(compact):
        ch = compact[i]
        if in_str:
            out.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
            out.append(ch)
        elif ch in "{[":
            if i + 1 < len(compact) and compact[i + 1] in "}]":
                out.append(ch + compact[i + 1])
                i += 1
            else:
                depth += 1
                out.append(ch + "\n" + step * depth)
        elif ch in "}]":
            depth -= 1
            out.append("\n" + step * depth + ch)
        elif ch == ",":
            out.append(",\n" + step * depth)
        elif ch == ":":
            out.append(": ")
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def json_of(value: GoValue) -> str:
    return go_json(value)


def go_print(value: GoValue) -> str:
    """``fmt.Sprintf("%v", v)`` of a decoded JSON scalar (numbers as Go prints float64s)."""
    return fmt_v(value)


def split_system(messages: list[Message]) -> tuple[Message | None, list[Message]]:
    """The first system message (the one that wins) and every non-system message in order."""
    first = next((m for m in messages if m["role"] == "system"), None)
    return first, [m for m in messages if m["role"] != "system"]
