"""The formats models write tool calls in, and which of them a given model uses.

A call is a JSON object (``{"name", "arguments"|"parameters"}``, OpenAI's ``{"function": {…}}``
or Command R's ``{"tool_name", "parameters"}``, alone or in a list) after a tag. Tags come from
the model's template (the literal a Go template writes before ``.ToolCalls``, as Ollama finds it,
or the call tag in the GGUF's Jinja template) and from the well-known formats: Hermes/Qwen
``<tool_call>…</tool_call>``, Mistral ``[TOOL_CALLS]`` (a list, or ``name[ARGS]{…}``), Llama 3.1
``<|python_tag|>``. These count anywhere in the output. Bare JSON, a fenced ```` ```json ```` block,
Command R's ``Action: ```json`` and FireFunction's ``functools`` count only at the very start.
The streaming parser over these is template.tools.ToolParser.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

from ollamalike.jsontypes import JSONObject, JSONValue

if TYPE_CHECKING:
    from ollamalike.template.render import ModelLike

_SKIP = {"directly-answer", "directly_answer"}  # Command R's "no tool" pseudo call


@dataclass(frozen=True)
class Tag:
    """How a group of calls opens and (optionally) closes; ``anywhere=False``: only at the start."""

    open: str
    close: str | None = None
    anywhere: bool = True


BARE = Tag("", None, anywhere=False)  # a JSON value at the very start of the output
KNOWN_TAGS: tuple[Tag, ...] = (
    Tag("<tool_call>", "</tool_call>"),             # Hermes, Qwen 2.5/3
    Tag("<tool_calls>", "</tool_calls>"),
    Tag("<function_call>", "</function_call>"),
    Tag("<|tool_call_start|>", "<|tool_call_end|>"),
    Tag("[TOOL_CALLS]"),                            # Mistral
    Tag("<|python_tag|>"),                          # Llama 3.1
    Tag("Action: ```json", "```", anywhere=False),  # Command R
    Tag("```json", "```", anywhere=False),
    Tag("```", "```", anywhere=False),
    Tag("functools", anywhere=False),               # FireFunction
)
_KNOWN_BY_OPEN = {t.open: t for t in KNOWN_TAGS}
# A call tag in a Jinja template: <tool_call>, <|tool_call_start|>, [TOOL_CALLS] ... (not a closer).
_JINJA_TAG = re.compile(r"<\|?[A-Za-z_]*call[A-Za-z_]*\|?>|\[[A-Z_]*CALL[A-Z_]*\]")


# -- what a call looks like -----------------------------------------------------------------------
class ParsedCall(TypedDict):
    """One call as the model wrote it: the tool's name and its arguments object."""

    name: str
    arguments: JSONObject


def as_call(obj: JSONValue) -> ParsedCall | None:
    if not isinstance(obj, dict):
        return None
    inner = obj.get("function")
    if isinstance(inner, dict):
        obj = inner
    name = obj.get("name", obj.get("tool_name"))
    if not isinstance(name, str) or not name or name in _SKIP:
        return None
    args: JSONValue = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except ValueError:
            return None
    if args is None:
        args = {}
    if not isinstance(args, dict):
        return None
    return {"name": name, "arguments": args}


def calls_in(value: JSONValue, names: Collection[str] | None = None) -> list[ParsedCall] | None:
    """The calls ``{"name", "arguments"}`` one JSON value holds, or None when it is not (only) calls
    of the tools in ``names`` (None: any name)."""
    items = value if isinstance(value, list) else [value]
    calls = [as_call(item) for item in items]
    if not calls or any(c is None or (names is not None and c["name"] not in names) for c in calls):
        return None
    return [c for c in calls if c is not None]


# -- which tags a model writes ---------------------------------------------------------------------
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


def jinja_tag(template: str | None) -> str | None:
    """The call tag a Jinja chat template teaches (``<tool_call>`` for Qwen), if it has one."""
    if not template or "tool" not in template:
        return None
    for m in _JINJA_TAG.finditer(template):
        tag = m.group(0)
        if not tag.startswith("</") and "end" not in tag.lower():
            return tag
    return None


def _closer(tag: str) -> str | None:
    if tag.endswith("```json") or tag.endswith("```"):
        return "```"
    if re.fullmatch(r"<[A-Za-z_][\w\-]*>", tag):
        return "</" + tag[1:]
    for opener in ("_start|>", "_begin|>"):
        if tag.endswith(opener):
            return tag[: -len(opener)] + "_end|>"
    return None


def tag_for(text: str) -> Tag:
    """A model-template tag as a Tag: a known one as such, else closed the way its shape says."""
    return _KNOWN_BY_OPEN.get(text) or Tag(text, _closer(text))


def model_tag(model: ModelLike | None) -> str | None:
    """The call tag of a model: its Modelfile TEMPLATE's, else its GGUF Jinja template's, else the
    detected named template's."""
    if model is None:
        return None
    if model.template:
        return template_prefix(model.template)
    tag = jinja_tag(model.info.chat_template)
    if tag:
        return tag
    from ollamalike.template.render import go_template_for

    return template_prefix(go_template_for(model))


def tags_for(model: ModelLike | None) -> tuple[Tag, ...]:
    """The model's own tag first, then the well-known ones."""
    own = model_tag(model)
    if not own or own in _KNOWN_BY_OPEN:
        return KNOWN_TAGS
    return (tag_for(own), *KNOWN_TAGS)


def tool_names(tools: object) -> set[str]:
    """The names of the offered tools (``[{"type": "function", "function": {"name"}}]``)."""
    names: set[str] = set()
    for tool in tools if isinstance(tools, (list, tuple)) else ():
        fn = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            names.add(fn["name"])
    return names
