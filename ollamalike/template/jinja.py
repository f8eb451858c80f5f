"""Rendering a GGUF's own Jinja chat template in jinja2's immutable sandbox, with hard limits.

The template comes from a model file, so it is untrusted: the sandbox blocks attribute access
outside safe data, ``range`` is capped, single ``*``, ``+`` and ``**`` results are capped, output
size is capped, and a time budget is checked on every call, operator and output chunk. What no
check between operations can bound (one C-level operation building gigabytes: ``~``, ``join``,
``format``, ``%``, filters, data kept across a loop) is bounded by where the render runs:
``render_jinja`` sends it to a worker process (``jinja_pool``) with an address-space limit and a
deadline, so what a template builds is measured by the memory it actually takes, never by the
template's text. Any violation or template error becomes a one-line ``BadRequest``.
"""

from __future__ import annotations

import datetime
import functools
import json
import pickle
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, TypeGuard

import jinja2
from jinja2 import nodes
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.ext import Extension
from jinja2.parser import Parser
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ollamalike.errors import BadRequest

MAX_RANGE = 100_000
MAX_STRING = 4 * 1024 * 1024
MAX_OUTPUT = 32 * 1024 * 1024
TIME_BUDGET = 2.0
MAX_INT_BITS = 1 << 16
MAX_MEMORY = 256 * 1024 * 1024  # what one render may allocate, beyond a few times its request
RECYCLE_GROWTH = 64 * 1024 * 1024  # a worker grown by more than this exits and is replaced


class _Limit(Exception):
    pass


class _GenerationTag(Extension):
    """transformers' ``{% generation %}…{% endgeneration %}`` (marks assistant text for training): renders its body."""

    tags = {"generation"}

    def parse(self, parser: Parser) -> nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.Scope(body, lineno=lineno)


class _Env(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "+"})

    def __init__(self) -> None:
        super().__init__(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols", _GenerationTag],
                         undefined=jinja2.Undefined)
        self._local = threading.local()
        self.globals["range"] = self._range
        self.globals["raise_exception"] = _raise_exception
        self.globals["strftime_now"] = _strftime_now
        self.filters["tojson"] = _tojson

    def set_deadline(self, deadline: float) -> None:
        self._local.deadline = deadline

    def check_time(self) -> None:
        if time.monotonic() > getattr(self._local, "deadline", float("inf")):
            raise _Limit("took too long to render")

    def _range(self, *args: int) -> range:
        self.check_time()
        r = range(*args)
        if len(r) > MAX_RANGE:
            raise _Limit(f"range() is limited to {MAX_RANGE} items")
        return r

    def unsafe_undefined(self, obj: object, attribute: str) -> jinja2.Undefined:
        # jinja2 would hand back an Undefined that renders as ""; a template probing internals is
        # hostile, so refuse outright.
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe")

    # Operands are whatever the template computes, and the operators are Python's own on them
    # (checked for size first): Any, as in jinja2's signature.
    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        self.check_time()
        if _is_int(left) and _is_int(right) and operator in ("*", "**"):
            bits = left.bit_length() + right.bit_length() if operator == "*" else left.bit_length() * abs(right)
            if bits > MAX_INT_BITS and abs(left) > 1:
                raise _Limit("number too large")
        if operator == "**":
            if isinstance(right, (int, float)) and isinstance(left, (int, float)) and abs(right) > 64 and abs(left) > 1:
                raise _Limit("exponent too large")
            return left**right
        if operator == "*":
            size = _seq_len(left) * _as_count(right) + _seq_len(right) * _as_count(left)
            if size > MAX_STRING:
                raise _Limit("string or list multiplication too large")
            return left * right
        result = left + right
        if _seq_len(result) > MAX_STRING:
            raise _Limit("string too large")
        return result

    # The rest only pass template values through to jinja2's own checks: any object.
    def call(self, __context: Context, __obj: object, *args: object, **kwargs: object) -> object:
        self.check_time()
        return super().call(__context, __obj, *args, **kwargs)

    def getattr(self, obj: object, attribute: str) -> object:
        self.check_time()
        return super().getattr(obj, attribute)

    def getitem(self, obj: object, argument: object) -> object:
        self.check_time()
        return super().getitem(obj, argument)


def _is_int(v: object) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def _seq_len(v: object) -> int:
    return len(v) if isinstance(v, (str, list, tuple, bytes)) else 0


def _as_count(v: object) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else 0


def _raise_exception(message: str) -> None:
    raise TemplateError(str(message))


def _strftime_now(fmt: str) -> str:
    return datetime.datetime.now().strftime(str(fmt))


def _tojson(value: object, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None,
            sort_keys: bool = False) -> str:
    # transformers' tojson (its parameters, in its order): no HTML escaping, keys in order, python's
    # default separators; jinja2's own would escape <>&' and sort keys.
    return json.dumps(_plain(value), indent=indent, ensure_ascii=ensure_ascii, sort_keys=sort_keys,
                      separators=separators)


def _plain(value: object) -> object:
    if isinstance(value, jinja2.Undefined):
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


_ENV = _Env()


@functools.lru_cache(maxsize=32)
def _compile(text: str) -> jinja2.Template:
    try:
        return _ENV.from_string(text)
    except TemplateError as e:
        raise BadRequest(f"chat template: {_one_line(e)}") from None
    except RecursionError:
        raise BadRequest("chat template: nesting too deep") from None


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _jinja_call(call: Mapping[str, object]) -> dict[str, object]:
    fn = call.get("function")
    fn = fn if isinstance(fn, Mapping) else {}
    return {**({"id": call["id"]} if call.get("id") else {}), "type": "function",
            "function": {"name": fn.get("name"), "arguments": fn.get("arguments")}}


def _jinja_messages(messages: Sequence[Mapping[str, object]]) -> list[dict[str, object]]:
    """Ollama's message shape (normalized: ``template.values.Message``) to the one Hugging Face
    templates read: ``tool_calls`` as ``{"id", "type": "function", "function": {"name", "arguments":
    dict}}``, a tool result's ``tool_name`` as ``name`` next to its ``tool_call_id``, ``thinking`` as
    ``reasoning_content``."""
    out = []
    for m in messages:
        msg: dict[str, object] = {"role": m["role"], "content": m["content"]}
        calls = m.get("tool_calls")
        if calls and isinstance(calls, list):
            msg["tool_calls"] = [_jinja_call(c) for c in calls if isinstance(c, Mapping)]
        if m.get("thinking"):
            msg["reasoning_content"] = m["thinking"]
        if m["role"] == "tool":
            if m.get("tool_name") or m.get("name"):
                msg["name"] = m.get("tool_name") or m.get("name")
            if m.get("tool_call_id"):
                msg["tool_call_id"] = m["tool_call_id"]
        out.append(msg)
    return out


def render_jinja(text: str, messages: Sequence[Mapping[str, object]], tools: Sequence[Mapping[str, object]],
                 think: bool | str | None,
                 bos_token: str = "", eos_token: str = "", budget: float = TIME_BUDGET) -> str:
    """Render as transformers' ``apply_chat_template`` does, with ``add_generation_prompt`` (or a
    prefill when the last message is the assistant's), in a render worker process (``jinja_pool``):
    a runaway template costs at most its time budget and ``MAX_MEMORY``, all given back, and is a
    one-line ``BadRequest``.

    Like transformers, ``tools`` and ``documents`` are always defined (None when there are none:
    templates test ``tools is not none``), and the tools are the client's dicts as given."""
    from ollamalike.template.jinja_pool import pool

    request = pickle.dumps({"text": text, "messages": messages, "tools": tools, "think": think,
                            "bos_token": bos_token, "eos_token": eos_token, "budget": budget},
                           protocol=pickle.HIGHEST_PROTOCOL)
    return pool().render(request, budget)


def render_here(text: str, messages: Sequence[Mapping[str, object]], tools: Sequence[Mapping[str, object]],
                think: bool | str | None,
                bos_token: str = "", eos_token: str = "", budget: float = TIME_BUDGET) -> str:
    """``render_jinja`` in this process, bounded only by the sandbox's own checks: what a render
    worker runs (``jinja_worker``), never the daemon."""
    tmpl = _compile(text)
    prefill = bool(messages) and messages[-1]["role"] == "assistant"
    ctx: dict[str, object] = {
        "messages": _jinja_messages(messages),
        "tools": tools or None,
        "documents": None,
        "add_generation_prompt": not prefill,
        "bos_token": bos_token,
        "eos_token": eos_token,
    }
    if think is not None:
        # The names GGUF chat templates read: Qwen 3 / GLM ``enable_thinking``, DeepSeek V3.1 and
        # Granite ``thinking``, gpt-oss ``reasoning_effort`` (a level; unset for a plain true).
        ctx["enable_thinking"] = ctx["thinking"] = bool(think)
        if isinstance(think, str):
            ctx["reasoning_effort"] = think
    env = tmpl.environment
    assert isinstance(env, _Env)
    env.set_deadline(time.monotonic() + budget)
    size = 0
    parts: list[str] = []
    try:
        for chunk in tmpl.generate(ctx):
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise _Limit("output too large")
            env.check_time()
            parts.append(chunk)
    except _Limit as e:
        raise BadRequest(f"chat template: {e}") from None
    except SecurityError as e:
        raise BadRequest(f"chat template: not allowed: {_one_line(e)}") from None
    except TemplateError as e:
        raise BadRequest(f"chat template: {_one_line(e)}") from None
    except RecursionError:
        raise BadRequest("chat template: recursion too deep") from None
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, ZeroDivisionError, OverflowError) as e:
        raise BadRequest(f"chat template: {type(e).__name__}: {_one_line(e)}") from None
    finally:
        env.set_deadline(float("inf"))
    result = "".join(parts)
    if prefill:
        # Like transformers' continue_final_message: stop right after the final message's text,
        # dropping whatever end-of-turn markup the template put after it.
        content = messages[-1]["content"]
        final = content.strip() if isinstance(content, str) else ""
        at = result.rfind(final) if final else -1
        if at >= 0:
            result = result[:at + len(final)]
        elif eos_token and result.endswith(eos_token):
            result = result[: -len(eos_token)]
    return result
