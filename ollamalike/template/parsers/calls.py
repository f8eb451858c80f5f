"""Decoding the body of one tool-call block, per family format, into ``ToolCall`` events.

Each decoder takes the text between a call's tags (and the parser context, for the tool schemas)
and returns the calls it holds, or None when the text is not a call in that format (the caller
then keeps it as content, exactly as generated).

- ``json_calls``: ``{"name", "arguments"}`` (or a list of them; Hermes, Qwen 2.5/3, Cohere's
  ``tool_name``/``parameters`` actions, LFM2's JSON form).
- ``xml_function``: Qwen3-Coder's ``<function=NAME><parameter=P>value</parameter></function>``;
  values are typed by the tool's JSON schema, as Ollama types them.
- ``glm_call``: GLM-4.x's ``NAME<arg_key>K</arg_key><arg_value>V</arg_value>…``.
- ``deepseek_call``: V3.1's ``NAME<｜tool▁sep｜>{json}``, R1/V3's ``function<｜tool▁sep｜>NAME`` and a
  fenced JSON block.
- ``pythonic_calls``: ``[f(a=1, b="x"), g()]`` (LFM2, Gemma-style ``tool_code``), read with
  ``ast`` (parsed, never evaluated).
- ``gemma_call``: FunctionGemma's ``call:NAME{key:<escape>text<escape>,n:1}`` (Gemma 4 quotes with
  ``<|"|>``).
"""

from __future__ import annotations

import ast
import json
import math
import re

from ollamalike.jsontypes import JSONObject, JSONValue
from ollamalike.template.parsers.base import ParserContext, ToolCall

DEEPSEEK_SEP = "<｜tool▁sep｜>"

_FUNCTION = re.compile(r"<function=([^>\n]+)>(.*?)</function>", re.S)
_PARAMETER = re.compile(r"<parameter=([^>\n]+)>(.*?)</parameter>", re.S)
_GLM_ARG = re.compile(r"<arg_key>(.*?)</arg_key>\s*<arg_value>(.*?)</arg_value>", re.S)
_FENCED_JSON = re.compile(r"```(?:json)?\s*(.*?)\s*```", re.S)
_GEMMA_CALL = re.compile(r"call:([^{\s]+)\{(.*)\}", re.S)
_ESCAPE = "<escape>"
GEMMA4_QUOTE = '<|"|>'  # Gemma 4 quotes strings with this token where FunctionGemma writes <escape>


def _as_object(value: JSONValue) -> JSONObject | None:
    return value if isinstance(value, dict) else None


def _loads(text: str) -> JSONValue | None:
    try:
        value: JSONValue = json.loads(text, strict=False)
    except ValueError:
        return None
    return value


# -- JSON ---------------------------------------------------------------------------------------
def _one_json_call(item: JSONValue) -> ToolCall | None:
    obj = _as_object(item)
    if obj is None:
        return None
    fn = obj.get("function")
    if isinstance(fn, dict):
        obj = fn
    name = obj.get("name", obj.get("tool_name"))
    if not isinstance(name, str) or not name:
        return None
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        args = _loads(args) if args.strip() else {}
    if args is None:
        args = {}
    if not isinstance(args, dict):
        return None
    return ToolCall(name, args)


def json_calls(body: str, ctx: ParserContext) -> list[ToolCall] | None:
    value = _loads(body.strip())
    items = value if isinstance(value, list) else [value]
    calls = [_one_json_call(item) for item in items]
    if not calls or any(c is None for c in calls):
        return None
    return [c for c in calls if c is not None]


# -- typed text values (Qwen3-Coder, GLM) ---------------------------------------------------------
def _number(raw: str, integer: bool) -> int | float | None:
    try:
        if integer:
            return int(raw)
        f = float(raw)
    except ValueError:
        return None
    if not math.isfinite(f):
        return None
    return int(f) if f == math.trunc(f) else f


def typed_value(raw: str, types: list[str]) -> JSONValue:
    """A parameter's text as its schema type says: Ollama's order (boolean, integer, number, array,
    object, string); an untyped parameter stays a string; ``null`` is null."""
    if raw.lower() == "null":
        return None
    if not types:
        return raw
    only = len(types) == 1
    if "boolean" in types:
        if raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        if only:
            return False
    for kind, integer in (("integer", True), ("number", False)):
        if kind in types:
            num = _number(raw, integer)
            if num is not None:
                return num
            if only:
                return raw
    for kind, shape in (("array", list), ("object", dict)):
        if kind in types:
            value = _loads(raw)
            if isinstance(value, shape):
                return value
            if only:
                return raw
    return raw


def _trim_newline(raw: str) -> str:
    raw = raw[1:] if raw.startswith("\n") else raw
    return raw[:-1] if raw.endswith("\n") else raw


def xml_function(body: str, ctx: ParserContext) -> list[ToolCall] | None:
    calls: list[ToolCall] = []
    for m in _FUNCTION.finditer(body):
        name = m.group(1).strip()
        types = ctx.param_types.get(name, {})
        args: JSONObject = {}
        for p in _PARAMETER.finditer(m.group(2)):
            pname = p.group(1).strip()
            args[pname] = typed_value(_trim_newline(p.group(2)), types.get(pname, []))
        calls.append(ToolCall(name, args))
    return calls or None


def glm_call(body: str, ctx: ParserContext) -> list[ToolCall] | None:
    text = body.strip()
    at = text.find("<arg_key>")
    name = (text if at < 0 else text[:at]).strip()
    if not name or "<" in name or "\n" in name:
        return None
    types = ctx.param_types.get(name, {})
    args: JSONObject = {}
    for m in _GLM_ARG.finditer(text):
        key = m.group(1).strip()
        args[key] = typed_value(m.group(2), types.get(key, []))
    return [ToolCall(name, args)]


# -- DeepSeek -------------------------------------------------------------------------------------
def deepseek_call(body: str, ctx: ParserContext) -> list[ToolCall] | None:
    head, sep, rest = body.partition(DEEPSEEK_SEP)
    if not sep:
        return None
    head = head.strip()
    if head == "function":  # R1 / V3: function<sep>NAME\n```json\n{…}\n```
        name, _, rest = rest.partition("\n")
        fenced = _FENCED_JSON.search(rest)
        rest = fenced.group(1) if fenced else rest
    else:
        name = head
    name = name.strip()
    args = _as_object(_loads(rest.strip())) if rest.strip() else {}
    if not name or args is None:
        return None
    return [ToolCall(name, args)]


# -- Python-style calls ---------------------------------------------------------------------------
def _literal(node: ast.expr) -> JSONValue:
    value = ast.literal_eval(node)
    return _jsonable(value)


def _jsonable(value: object) -> JSONValue:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("not a JSON number")
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    raise ValueError(f"not a JSON value: {type(value).__name__}")


def _call_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _call_name(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _expressions(text: str) -> list[ast.expr] | None:
    """The call expressions of ``[f(…), g(…)]``, of one ``f(…)``, or of one call per line (OLMo 3)."""
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError):
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if len(lines) < 2:
            return None
        nodes: list[ast.expr] = []
        for line in lines:
            one = _expressions(line)
            if one is None:
                return None
            nodes += one
        return nodes
    return list(tree.body.elts) if isinstance(tree.body, (ast.List, ast.Tuple)) else [tree.body]


def pythonic_calls(body: str, ctx: ParserContext) -> list[ToolCall] | None:
    text = body.strip()
    if text.startswith("```"):
        text = text.strip("`").strip()
        text = text[len("tool_code"):] if text.startswith("tool_code") else text
        text = text[len("python"):] if text.startswith("python") else text
    nodes = _expressions(text.strip())
    if nodes is None:
        return None
    calls: list[ToolCall] = []
    for node in nodes:
        # Only keyword arguments name parameters; a positional one (or **kw) is not a call we can map.
        if not isinstance(node, ast.Call) or node.args or any(kw.arg is None for kw in node.keywords):
            return None
        name = _call_name(node.func)
        if name is None:
            return None
        try:
            args: JSONObject = {str(kw.arg): _literal(kw.value) for kw in node.keywords}
        except (ValueError, TypeError, SyntaxError):
            return None
        calls.append(ToolCall(name, args))
    return calls or None


# -- FunctionGemma --------------------------------------------------------------------------------
def _split_top(text: str) -> list[str]:
    """Split at commas outside brackets and ``<escape>…<escape>`` strings."""
    parts: list[str] = []
    cur: list[str] = []
    depth, escaped, i = 0, False, 0
    while i < len(text):
        if text.startswith(_ESCAPE, i):
            escaped = not escaped
            cur.append(_ESCAPE)
            i += len(_ESCAPE)
            continue
        c = text[i]
        if not escaped and c in "{[":
            depth += 1
        elif not escaped and c in "}]":
            depth -= 1
        elif not escaped and c == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
            i += 1
            continue
        cur.append(c)
        i += 1
    if cur:
        parts.append("".join(cur))
    return parts


def _gemma_value(raw: str) -> JSONValue:
    if len(raw) >= 2 * len(_ESCAPE) and raw.startswith(_ESCAPE) and raw.endswith(_ESCAPE):
        return raw[len(_ESCAPE):-len(_ESCAPE)]
    if raw in ("true", "false"):
        return raw == "true"
    num = _number(raw, integer=False) if raw[:1].isdigit() or raw[:1] == "-" else None
    if num is not None:
        return num
    if raw.startswith("[") and raw.endswith("]"):
        return [_gemma_value(p) for p in _split_top(raw[1:-1])]
    if raw.startswith("{") and raw.endswith("}"):
        return _gemma_object(raw[1:-1])
    return raw


def _gemma_object(text: str) -> JSONObject:
    out: JSONObject = {}
    for part in _split_top(text):
        key, colon, value = part.partition(":")
        if colon:
            out[key.strip()] = _gemma_value(value)
    return out


def gemma_call(body: str, ctx: ParserContext) -> list[ToolCall] | None:
    m = _GEMMA_CALL.search(body.replace(GEMMA4_QUOTE, _ESCAPE))
    if m is None:
        return None
    return [ToolCall(m.group(1).strip(), _gemma_object(m.group(2)))]
