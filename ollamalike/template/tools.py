"""Tool calls parsed out of model output, as Ollama does: JSON objects after a model-specific
prefix (``<tool_call>``, ``[TOOL_CALLS]``, ``<|python_tag|>``, ``Action:``, ```` ```json ````) or
at the start of the output. Arguments always come back as JSON objects."""

from __future__ import annotations

import json
from typing import Any

PREFIXES = ("<tool_call>", "[TOOL_CALLS]", "<|python_tag|>", "<function_call>", "<|tool_call_start|>",
            "<tool_calls>", "functools")
_SKIP = {"directly-answer", "directly_answer"}
_DECODER = json.JSONDecoder()


def _json_values(text: str) -> list[Any]:
    """Every top-level JSON object/array in text, left to right."""
    values: list[Any] = []
    pos = 0
    while True:
        starts = [i for i in (text.find("{", pos), text.find("[", pos)) if i >= 0]
        if not starts:
            return values
        start = min(starts)
        try:
            value, end = _DECODER.raw_decode(text, start)
        except ValueError:
            pos = start + 1
            continue
        values.append(value)
        pos = end


def _as_call(obj: Any) -> dict[str, Any] | None:
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("function"), dict):
        obj = obj["function"]
    name = obj.get("name", obj.get("tool_name"))
    if not isinstance(name, str) or not name or name in _SKIP:
        return None
    args: Any = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except ValueError:
            return None
    if args is None:
        args = {}
    if not isinstance(args, dict):
        return None
    return {"function": {"name": name, "arguments": args}}


def _collect(values: list[Any]) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    for v in values:
        items = v if isinstance(v, list) else [v]
        for item in items:
            call = _as_call(item)
            if call is not None:
                calls.append(call)
    return calls


def template_prefix(template: str | None) -> str | None:
    """The literal a Go template writes before each tool call (``{{ range .ToolCalls }}<call>{…``),
    found the way Ollama does: the text after the ``.ToolCalls`` action, up to the JSON."""
    if not template:
        return None
    at = template.find(".ToolCalls")
    for _ in range(3):
        if at < 0:
            return None
        end = template.find("}}", at)
        if end < 0:
            return None
        nxt = template.find("{{", end)
        literal = template[end + 2:nxt if nxt >= 0 else len(template)]
        # The JSON starts at the first "{"; a "[" right before it opens a list of calls.
        brace = literal.find("{")
        prefix = (literal[:brace] if brace >= 0 else literal).strip().rstrip("[ \t\n")
        if prefix:
            return prefix
        if literal.strip() or nxt < 0:
            return None
        at = nxt
    return None


def parse_tool_text(text: str, extra_prefixes: tuple[str, ...] = ()) -> list[dict[str, Any]] | None:
    """Tool calls in ``text`` or None when the output is plain content."""
    stripped = text.strip()
    prefixes = extra_prefixes + PREFIXES
    positions = [p for p in (stripped.find(x) for x in prefixes) if p >= 0]
    if positions:
        body = stripped[min(positions):]
        for prefix in prefixes:
            body = body.replace(prefix, " ")
    elif stripped.startswith(("{", "[", "```json", "Action:")):
        body = stripped
    else:
        return None
    body = body.replace("```json", " ").replace("```", " ").replace("Action:", " ")
    calls = _collect(_json_values(body))
    for index, call in enumerate(calls):
        call["function"]["index"] = index
    return calls or None


def parse_tool_calls(model: Any, text: str) -> list[dict[str, Any]] | None:
    """``[{"function": {"name", "arguments": dict, "index"}}]`` parsed from a model's output, or None.

    The prefix the model's Go template writes before tool calls is recognised, and so are the
    prefixes of every well-known format."""
    from ollamalike.template.render import go_template_for

    prefix = template_prefix(go_template_for(model)) if model is not None else None
    return parse_tool_text(text, (prefix,) if prefix else ())
