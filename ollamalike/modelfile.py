'''Modelfile parsing (errors name the line) and writing back, with Ollama's syntax rules.

A Modelfile is a sequence of instructions, case-insensitive: FROM (exactly one), ADAPTER, TEMPLATE,
SYSTEM, PARAMETER, MESSAGE and LICENSE. ENGINE (ours, not Ollama's: its parser refuses the line)
takes the place of FROM for a model served by a remote engine (``ollamalike.remote.engine``). Lines whose first non-blank character is # are comments.
A value runs to the end of the line, or is quoted with " or """ and may then span lines. As in
Ollama, a quoted value ends at the first line end where the text so far, trimmed, ends with its
closing quote; there are no escape sequences. One extension makes every value writable: inside a
"""-quoted value, a line ending in """ followed by one or more backslashes loses one backslash, so
``format`` writes a value line that ends in """ as """\\ (Ollama cannot write such values at all).
'''

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ollamalike import options
from ollamalike.errors import BadRequest
from ollamalike.remote.engine import Engine

INSTRUCTIONS = ("FROM", "ADAPTER", "TEMPLATE", "SYSTEM", "PARAMETER", "MESSAGE", "LICENSE", "ENGINE")
MESSAGE_ROLES = ("system", "user", "assistant")

_NEWLINE_RE = re.compile(r"(\r\n|\r|\n)")
_WORD_RE = re.compile(r"[A-Za-z]+")
_PARAM_NAME_RE = re.compile(r"[A-Za-z0-9_]+")
_ESCAPABLE_RE = re.compile(r'"""\\*\Z')
_ESCAPED_RE = re.compile(r'"""\\+\Z')


@dataclass
class Modelfile:
    from_: str
    parameters: list[tuple[str, Any]] = field(default_factory=list)
    template: str | None = None
    system: str | None = None
    adapters: list[str] = field(default_factory=list)
    license: list[str] = field(default_factory=list)
    messages: list[dict[str, str]] = field(default_factory=list)
    engine: Engine | None = None  # ENGINE instead of FROM: from_ is then ""

    @property
    def params(self) -> dict[str, Any]:
        """The parameters as the ``params`` layer object (repeated ``stop`` lines grouped into a list)."""
        return options.params_to_json(self.parameters)


class _Lines:
    """The text split at \\r\\n, \\r and \\n (Ollama's newlines), keeping each separator."""

    def __init__(self, text: str) -> None:
        pieces = _NEWLINE_RE.split(text)
        self.lines = pieces[0::2]
        self.seps = pieces[1::2] + [""]


def _error(lineno: int, message: str) -> BadRequest:
    return BadRequest(f"Modelfile line {lineno}: {message}")


def _token(text: str) -> str:
    word = text.split()[0] if text.split() else text
    return word if len(word) <= 40 else word[:40] + "…"


def _read_value(src: _Lines, i: int, first: str) -> tuple[str, int]:
    """The value starting with ``first`` (rest of line ``i``); returns it and the index of the next line.

    Only the first line and each line's own end decide where a quoted value closes, so this is linear
    in the size of the value (a whitespace-only line never closes a value the previous line left open).
    """
    head = first.strip()
    quote = '"""' if head.startswith('"""') else '"' if head.startswith('"') else ""
    if not quote or (len(head) >= 2 * len(quote) and head.endswith(quote)):
        return _finish(head, quote), i + 1
    parts = [first]
    j = i
    while True:
        if j + 1 >= len(src.lines):
            raise _error(i + 1, f"unterminated {quote} quoted value")
        parts.append(src.seps[j])
        j += 1
        parts.append(src.lines[j])
        if src.lines[j].rstrip().endswith(quote):
            return _finish("".join(parts).strip(), quote), j + 1


def _finish(text: str, quote: str) -> str:
    if not quote:
        return text
    inner = text[len(quote) : len(text) - len(quote)]
    if quote == '"""':
        inner = _unescape(inner)
    return inner


def _map_inner_lines(text: str, pattern: re.Pattern[str], change: int) -> str:
    """Add (change=1) or drop (change=-1) one backslash on lines followed by a newline whose trimmed end matches."""
    pieces = _NEWLINE_RE.split(text)
    for k in range(0, len(pieces) - 1, 2):
        line = pieces[k]
        body = line.rstrip()
        if pattern.search(body):
            pieces[k] = (body + "\\" if change > 0 else body[:-1]) + line[len(body) :]
    return "".join(pieces)


def _unescape(inner: str) -> str:
    return _map_inner_lines(inner, _ESCAPED_RE, -1)


def quote(value: str) -> str:
    """``value`` as Modelfile text that ``parse`` reads back exactly (bare when Ollama would read it so)."""
    multiline = "\n" in value or "\r" in value
    if value and not multiline and value == value.strip() and not value.startswith('"'):
        return value
    if '"' not in value:
        return f'"{value}"'
    return '"""' + _map_inner_lines(value, _ESCAPABLE_RE, 1) + '"""'


def parse(text: str) -> Modelfile:
    """Parse a Modelfile; every error is a ``BadRequest`` naming the line."""
    if not isinstance(text, str):
        raise BadRequest("Modelfile must be text")
    if text.startswith("\ufeff"):
        text = text[1:]
    src = _Lines(text)
    from_: str | None = None
    from_line = 0
    mf = Modelfile(from_="")
    engine_line = 0
    i = 0
    while i < len(src.lines):
        lineno = i + 1
        line = src.lines[i].lstrip(" \t")
        if not line or line.startswith("#"):
            i += 1
            continue
        m = _WORD_RE.match(line)
        word = m.group(0) if m else ""
        instruction = word.upper()
        rest = line[len(word) :]
        if instruction not in INSTRUCTIONS or (rest and rest[0] not in " \t"):
            raise _error(
                lineno,
                f'unknown instruction "{_token(line)}" (expected FROM, ADAPTER, TEMPLATE, SYSTEM, '
                "PARAMETER, MESSAGE, LICENSE or ENGINE)",
            )
        if not rest.strip():
            raise _error(lineno, f"{instruction} needs a value")
        if instruction == "PARAMETER":
            name, rest = _leading_name(lineno, instruction, rest, _PARAM_NAME_RE, "parameter name")
            name = name.lower()
            value, i = _read_value(src, i, rest)
            try:
                mf.parameters.append((name, options.parse_parameter(name, value)))
            except BadRequest as e:
                raise _error(lineno, e.message) from None
            continue
        if instruction == "MESSAGE":
            role, rest = _leading_name(lineno, instruction, rest, _WORD_RE, "message role")
            if role.lower() not in MESSAGE_ROLES:
                raise _error(lineno, f'message role must be "system", "user" or "assistant", got "{_token(role)}"')
            value, i = _read_value(src, i, rest)
            mf.messages.append({"role": role.lower(), "content": value})
            continue
        value, i = _read_value(src, i, rest)
        if instruction == "ENGINE":
            if mf.engine is not None:
                raise _error(lineno, "more than one ENGINE")
            try:
                mf.engine = Engine.parse_line(value)
            except BadRequest as e:
                raise _error(lineno, e.message) from None
            engine_line = lineno
        elif instruction == "FROM":
            if from_ is not None:
                raise _error(lineno, f"more than one FROM (the first is on line {from_line})")
            if not value:
                raise _error(lineno, "FROM needs a model name or a path")
            from_, from_line = value, lineno
        elif instruction == "ADAPTER":
            if not value:
                raise _error(lineno, "ADAPTER needs a path")
            mf.adapters.append(value)
        elif instruction == "TEMPLATE":
            mf.template = value
        elif instruction == "SYSTEM":
            mf.system = value
        else:
            mf.license.append(value)
    if mf.engine is not None:
        if from_ is not None:
            raise _error(max(from_line, engine_line), "a Modelfile has FROM or ENGINE, not both "
                         "(ENGINE serves the model from a remote engine, FROM from local weights)")
        if mf.adapters:
            raise _error(engine_line, "ADAPTER cannot be used with ENGINE (the remote engine has the weights)")
        return mf
    if from_ is None:
        raise BadRequest("Modelfile has no FROM line")
    mf.from_ = from_
    return mf


def _leading_name(lineno: int, instruction: str, rest: str, pattern: re.Pattern[str], what: str) -> tuple[str, str]:
    """Split ``rest`` into a leading name and what follows it (the value, still with its leading blanks)."""
    body = rest.lstrip(" \t")
    m = pattern.match(body)
    after = body[m.end() :] if m else body
    if not m or (after and after[0] not in " \t"):
        raise _error(lineno, f'invalid {what} "{_token(body)}"')
    if not after.strip():
        raise _error(lineno, f"{instruction} {m.group(0)} needs a value")
    return m.group(0), after


def parameter_lines(params: Mapping[str, Any] | list[tuple[str, Any]]) -> list[str]:
    """``PARAMETER`` lines for a ``params`` object or (name, value) pairs; list values become repeated lines."""
    pairs: list[tuple[str, Any]] = []
    for name, value in params.items() if isinstance(params, Mapping) else params:
        if isinstance(value, list):
            pairs.extend((name, item) for item in value)
        else:
            pairs.append((name, value))
    return [f"PARAMETER {name} {quote(options.format_value(value))}" for name, value in pairs]


def format(mf: Modelfile) -> str:
    """The Modelfile text; ``parse(format(mf))`` gives back ``mf``."""
    lines = [f"ENGINE {mf.engine.line_value()}" if mf.engine is not None else f"FROM {quote(mf.from_)}"]
    lines += [f"ADAPTER {quote(a)}" for a in mf.adapters]
    if mf.template is not None:
        lines.append(f"TEMPLATE {quote(mf.template)}")
    if mf.system is not None:
        lines.append(f"SYSTEM {quote(mf.system)}")
    lines += parameter_lines(mf.parameters)
    lines += [f"MESSAGE {m['role']} {quote(m['content'])}" for m in mf.messages]
    lines += [f"LICENSE {quote(text)}" for text in mf.license]
    return "\n".join(lines) + "\n"
