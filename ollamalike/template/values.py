"""The data Ollama passes to a Go template: messages, tools and tool calls in Ollama's shapes.

Messages and tools become ``Struct`` values with Ollama's field names (``.Role``, ``.Content``,
``.ToolCalls``, ``.Function.Name``, ``.Function.Arguments`` …); arguments and tool properties are
maps whose printed form is JSON, as in Ollama. Also: collating consecutive same-role messages.
Request messages and tools are checked once into the ``Message`` and ``Tool`` TypedDicts.
"""

from __future__ import annotations

import json
from typing import TypedDict, cast

from ollamalike.errors import BadRequest
from ollamalike.jsontypes import JSONObject, JSONValue
from ollamalike.template.govalues import GoValue, JSONList, JSONMap, NilJSONList, NilSlice, Struct, as_list


# Required keys live in a ``_…Base`` class, optional ones in its ``total=False`` subclass (Python
# 3.10 has no ``typing.Required``).
class _FunctionCallBase(TypedDict):
    name: str
    arguments: JSONObject


class FunctionCall(_FunctionCallBase, total=False):
    index: JSONValue  # as the client sent it


class _ToolCallBase(TypedDict):
    function: FunctionCall


class ToolCall(_ToolCallBase, total=False):
    id: JSONValue


class _MessageBase(TypedDict):
    role: str
    content: str
    tool_calls: list[ToolCall]


class Message(_MessageBase, total=False):
    """A normalized message: role, content and tool calls checked; the optional fields are passed
    through as the client sent them (templates print them as they are)."""

    thinking: JSONValue
    images: JSONValue
    tool_name: JSONValue
    name: JSONValue
    tool_call_id: JSONValue


class _ToolFunctionBase(TypedDict):
    name: str


class ToolFunction(_ToolFunctionBase, total=False):
    description: JSONValue
    parameters: JSONObject | None


class _ToolBase(TypedDict):
    function: ToolFunction


class Tool(_ToolBase, total=False):
    """A tool definition whose ``function`` object, name and parameters were checked; the client's
    dict itself (a Jinja template sees it as given)."""

    type: JSONValue
    items: JSONValue


def normalize_messages(messages: object) -> list[Message]:
    """Validate request messages: a list of objects with a string role and string content."""
    if messages is None:
        return []
    if not isinstance(messages, list):
        raise BadRequest("messages must be a list")
    out: list[Message] = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise BadRequest(f"messages[{i}] must be an object")
        role = m.get("role")
        if not isinstance(role, str) or not role:
            raise BadRequest(f"messages[{i}]: role is required")
        content = m.get("content", "")
        if content is None:
            content = ""
        if not isinstance(content, str):
            raise BadRequest(f"messages[{i}]: content must be a string")
        msg: Message = {"role": role, "content": content,
                        "tool_calls": [_normalize_call(c, i) for c in (m.get("tool_calls") or [])]}
        # Passed through unchecked, as the client sent them (a key that is absent stays absent).
        if "thinking" in m:
            msg["thinking"] = m["thinking"]
        if "images" in m:
            msg["images"] = m["images"]
        if "tool_name" in m:
            msg["tool_name"] = m["tool_name"]
        if "name" in m:
            msg["name"] = m["name"]
        if "tool_call_id" in m:
            msg["tool_call_id"] = m["tool_call_id"]
        out.append(msg)
    return out


def _normalize_call(call: object, i: int) -> ToolCall:
    if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
        raise BadRequest(f"messages[{i}]: each tool call needs a function object")
    fn = call["function"]
    name = fn.get("name")
    if not isinstance(name, str):
        raise BadRequest(f"messages[{i}]: tool call function name must be a string")
    args = fn.get("arguments") or {}
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except ValueError:
            raise BadRequest(f"messages[{i}]: tool call arguments are not valid JSON") from None
    if not isinstance(args, dict):
        raise BadRequest(f"messages[{i}]: tool call arguments must be an object")
    out: ToolCall = {"function": {"name": name, "arguments": args}}
    if "index" in fn:
        out["function"]["index"] = fn["index"]
    if call.get("id"):
        out["id"] = call["id"]
    return out


def collate(messages: list[Message]) -> tuple[str, list[Message]]:
    """Ollama's collate: all system contents joined, and consecutive same-role messages (not tool
    results) merged with a blank line between their contents."""
    system: list[str] = []
    out: list[Message] = []
    for m in messages:
        if m["role"] == "system":
            system.append(m["content"])
        if out and out[-1]["role"] == m["role"] and m["role"] != "tool":
            prev = out[-1].copy()
            prev["content"] = prev["content"] + "\n\n" + m["content"]
            out[-1] = prev
        else:
            out.append(m)
    return "\n\n".join(system), out


def message_struct(m: Message) -> Struct:
    calls = [
        Struct("template.templateToolCall", {
            "ID": c.get("id", ""),
            "Function": Struct("template.templateToolCallFunction", {
                "Index": c["function"].get("index", 0),
                "Name": c["function"]["name"],
                "Arguments": JSONMap(c["function"]["arguments"]),
            }),
        })
        for c in m["tool_calls"]
    ]
    return Struct("*template.templateMessage", {
        "Role": m["role"],
        "Content": m["content"],
        "Thinking": m.get("thinking") or "",
        "Images": as_list(m.get("images")) or NilSlice(),
        "ToolCalls": calls or NilSlice(),
        "ToolName": m.get("tool_name") or m.get("name") or "",
        "ToolCallID": m.get("tool_call_id") or "",
    })


def validate_tools(tools: object) -> list[Tool]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise BadRequest("tools must be a list")
    for i, t in enumerate(tools):
        if not isinstance(t, dict) or not isinstance(t.get("function"), dict) or not isinstance(
                t["function"].get("name"), str):
            raise BadRequest(f"tools[{i}]: each tool needs a function object with a name")
        params = t["function"].get("parameters")
        if params is not None and not isinstance(params, dict):
            raise BadRequest(f"tools[{i}]: function parameters must be an object")
    # Checked above: every item has the shape of a Tool (the client's dicts, not copies).
    return cast("list[Tool]", tools)


def property_struct(p: GoValue) -> GoValue:
    """A tool parameter's JSON schema as Ollama's ``api.ToolProperty``; anything else as it is."""
    if not isinstance(p, dict):
        return p
    raw_type = p.get("type")
    types = [raw_type] if isinstance(raw_type, str) else as_list(raw_type)
    type_value = types[0] if len(types) == 1 else ("[" + " ".join(map(str, types)) + "]" if types else "")
    props = p.get("properties")
    fields: dict[str, GoValue] = {
        "AnyOf": [property_struct(x) for x in as_list(p.get("anyOf"))],
        "Type": type_value,
        "Items": p.get("items"),
        "Description": p.get("description") or "",
        "Enum": as_list(p.get("enum")),
        "Properties": JSONMap({k: property_struct(v) for k, v in props.items()}) if isinstance(props, dict) else None,
        "Required": as_list(p.get("required")),
    }
    json_fields: list[tuple[str, GoValue, bool]] = [
        ("anyOf", fields["AnyOf"], True),
        ("type", raw_type, True),
        ("items", fields["Items"], True),
        ("description", fields["Description"], True),
        ("enum", fields["Enum"], True),
        ("properties", fields["Properties"], True),
        ("required", fields["Required"], True),
    ]
    return Struct("api.ToolProperty", fields, json_fields, stringer=False)


def _properties(params: JSONObject) -> JSONMap:
    props = params.get("properties") or {}
    if not isinstance(props, dict):
        # As before this was typed: a non-object ``properties`` fails where ``.items()`` is called.
        raise AttributeError(f"'{type(props).__name__}' object has no attribute 'items'")
    return JSONMap({k: property_struct(v) for k, v in props.items()})


def tools_value(tools: list[Tool]) -> JSONList:
    if not tools:
        return NilJSONList()
    out = JSONList()
    for t in tools:
        fn = t["function"]
        params = fn.get("parameters") or {}
        p_fields: dict[str, GoValue] = {
            "Type": params.get("type", ""),
            "Defs": params.get("$defs"),
            "Items": params.get("items"),
            "Required": as_list(params.get("required")),
            "Properties": _properties(params),
        }
        p_struct = Struct("template.templateToolFunctionParameters", p_fields, [
            ("type", p_fields["Type"], False), ("$defs", p_fields["Defs"], True), ("items", p_fields["Items"], True),
            ("required", p_fields["Required"], True), ("properties", p_fields["Properties"], False)])
        f_fields: dict[str, GoValue] = {"Name": fn["name"], "Description": fn.get("description", ""),
                                        "Parameters": p_struct}
        f_struct = Struct("template.templateToolFunction", f_fields, [
            ("name", f_fields["Name"], False), ("description", f_fields["Description"], False),
            ("parameters", p_struct, False)])
        t_fields: dict[str, GoValue] = {"Type": t.get("type", "function"), "Items": t.get("items"),
                                        "Function": f_struct}
        out.append(Struct("template.templateTool", t_fields, [
            ("type", t_fields["Type"], False), ("items", t_fields["Items"], True), ("function", f_struct, False)],
            stringer=True))
    return out
