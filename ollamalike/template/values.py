"""The data Ollama passes to a Go template: messages, tools and tool calls in Ollama's shapes.

Messages and tools become ``Struct`` values with Ollama's field names (``.Role``, ``.Content``,
``.ToolCalls``, ``.Function.Name``, ``.Function.Arguments`` …); arguments and tool properties are
maps whose printed form is JSON, as in Ollama. Also: collating consecutive same-role messages.
"""

from __future__ import annotations

import json
from typing import Any

from ollamalike.errors import BadRequest
from ollamalike.template.govalues import JSONList, JSONMap, NilJSONList, NilSlice, Struct


def normalize_messages(messages: Any) -> list[dict[str, Any]]:
    """Validate request messages: a list of objects with a string role and string content."""
    if messages is None:
        return []
    if not isinstance(messages, list):
        raise BadRequest("messages must be a list")
    out: list[dict[str, Any]] = []
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
        msg = dict(m)
        msg["content"] = content
        msg["tool_calls"] = [_normalize_call(c, i) for c in (m.get("tool_calls") or [])]
        out.append(msg)
    return out


def _normalize_call(call: Any, i: int) -> dict[str, Any]:
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
    out: dict[str, Any] = {"function": {"name": name, "arguments": args}}
    if "index" in fn:
        out["function"]["index"] = fn["index"]
    if call.get("id"):
        out["id"] = call["id"]
    return out


def collate(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """Ollama's collate: all system contents joined, and consecutive same-role messages (not tool
    results) merged with a blank line between their contents."""
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for m in messages:
        if m["role"] == "system":
            system.append(m["content"])
        if out and out[-1]["role"] == m["role"] and m["role"] != "tool":
            prev = dict(out[-1])
            prev["content"] = prev["content"] + "\n\n" + m["content"]
            out[-1] = prev
        else:
            out.append(m)
    return "\n\n".join(system), out


def message_struct(m: dict[str, Any]) -> Struct:
    calls = [
        Struct("template.templateToolCall", {
            "ID": c.get("id", ""),
            "Function": Struct("template.templateToolCallFunction", {
                "Index": c["function"].get("index", 0),
                "Name": c["function"]["name"],
                "Arguments": JSONMap(c["function"]["arguments"]),
            }),
        })
        for c in m.get("tool_calls") or []
    ]
    return Struct("*template.templateMessage", {
        "Role": m["role"],
        "Content": m["content"],
        "Thinking": m.get("thinking") or "",
        "Images": list(m.get("images") or []) or NilSlice(),
        "ToolCalls": calls or NilSlice(),
        "ToolName": m.get("tool_name") or m.get("name") or "",
        "ToolCallID": m.get("tool_call_id") or "",
    })


def validate_tools(tools: Any) -> list[dict[str, Any]]:
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
    return tools


def property_struct(p: Any) -> Any:
    if not isinstance(p, dict):
        return p
    raw_type = p.get("type")
    types = [raw_type] if isinstance(raw_type, str) else list(raw_type or [])
    type_value = types[0] if len(types) == 1 else ("[" + " ".join(map(str, types)) + "]" if types else "")
    props = p.get("properties")
    fields = {
        "AnyOf": [property_struct(x) for x in p.get("anyOf") or []],
        "Type": type_value,
        "Items": p.get("items"),
        "Description": p.get("description") or "",
        "Enum": list(p.get("enum") or []),
        "Properties": JSONMap({k: property_struct(v) for k, v in props.items()}) if isinstance(props, dict) else None,
        "Required": list(p.get("required") or []),
    }
    json_fields = [
        ("anyOf", fields["AnyOf"], True),
        ("type", raw_type, True),
        ("items", fields["Items"], True),
        ("description", fields["Description"], True),
        ("enum", fields["Enum"], True),
        ("properties", fields["Properties"], True),
        ("required", fields["Required"], True),
    ]
    return Struct("api.ToolProperty", fields, json_fields, stringer=False)


def tools_value(tools: list[dict[str, Any]]) -> JSONList:
    if not tools:
        return NilJSONList()
    out = JSONList()
    for t in tools:
        fn = t["function"]
        params = fn.get("parameters") or {}
        props = params.get("properties") or {}
        p_fields = {
            "Type": params.get("type", ""),
            "Defs": params.get("$defs"),
            "Items": params.get("items"),
            "Required": list(params.get("required") or []),
            "Properties": JSONMap({k: property_struct(v) for k, v in props.items()}),
        }
        p_struct = Struct("template.templateToolFunctionParameters", p_fields, [
            ("type", p_fields["Type"], False), ("$defs", p_fields["Defs"], True), ("items", p_fields["Items"], True),
            ("required", p_fields["Required"], True), ("properties", p_fields["Properties"], False)])
        f_fields = {"Name": fn["name"], "Description": fn.get("description", ""), "Parameters": p_struct}
        f_struct = Struct("template.templateToolFunction", f_fields, [
            ("name", f_fields["Name"], False), ("description", f_fields["Description"], False),
            ("parameters", p_struct, False)])
        t_fields = {"Type": t.get("type", "function"), "Items": t.get("items"), "Function": f_struct}
        out.append(Struct("template.templateTool", t_fields, [
            ("type", t_fields["Type"], False), ("items", t_fields["Items"], True), ("function", f_struct, False)],
            stringer=True))
    return out
