"""A reference chat-template renderer for tests: Hugging Face transformers' ``apply_chat_template``
rendering (``tokenize=False``), rebuilt from plain jinja2 and nothing of ollamalike's.

transformers compiles the template in an ``ImmutableSandboxedEnvironment`` with ``trim_blocks`` and
``lstrip_blocks``, the ``loopcontrols`` extension and a ``{% generation %}`` tag, replaces ``tojson``
with ``json.dumps(x, ensure_ascii=False, indent=…, separators=…, sort_keys=…)``, adds the globals
``raise_exception`` and ``strftime_now``, and renders with ``messages``, ``tools`` (None when none),
``documents`` (None), ``add_generation_prompt`` and the tokenizer's special tokens.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

import jinja2
import jinja2.ext
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment


class _Generation(jinja2.ext.Extension):
    tags = {"generation"}

    def parse(self, parser: Any) -> Any:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.Scope(body, lineno=lineno)


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(x: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None,
            sort_keys: bool = False) -> str:
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.datetime.now().strftime(fmt)


def apply_chat_template(template: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None,
                        add_generation_prompt: bool = True, **special_tokens: str) -> str:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[_Generation, jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env.from_string(template).render(messages=messages, tools=tools, documents=None,
                                            add_generation_prompt=add_generation_prompt, **special_tokens)


def to_ollama(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same conversation as an Ollama client sends it: tool calls without ``type``, a tool
    result's ``name`` as ``tool_name``."""
    out = []
    for m in messages:
        msg: dict[str, Any] = {"role": m["role"], "content": m.get("content") or ""}
        if m.get("tool_calls"):
            msg["tool_calls"] = [{"id": c["id"], "function": dict(c["function"])} for c in m["tool_calls"]]
        if m.get("name"):
            msg["tool_name"] = m["name"]
        if m.get("tool_call_id"):
            msg["tool_call_id"] = m["tool_call_id"]
        out.append(msg)
    return out
