'''Modelfile parsing (errors name the line) and writing back, with Ollama's syntax rules.

A Modelfile is a sequence of instructions, case-insensitive: FROM (at least one), ADAPTER, TEMPLATE,
SYSTEM, PARAMETER, MESSAGE, LICENSE, and Ollama's newer DRAFT, RENDERER, PARSER and REQUIRES. ENGINE
(ours, not Ollama's: its parser refuses the line) takes the place of FROM for a model served by a
remote engine (``ollamalike.remote.engine``). Lines whose first non-blank character is # are
comments. As in Ollama, MESSAGE roles are case-sensitive (``system``, ``user``, ``assistant``), and a
PARAMETER name is only checked against the parameter table at create (parse accepts any name,
keeping an unknown one's value as text); a known name's value is typed here, so a bad value still
names its line. Repeated FROM lines are all kept: files they name are merged (a model GGUF and its
projector), and of the model names the last one wins (``library.create`` and the CLI decide which
FROM is which). ``decode`` reads a Modelfile's bytes: UTF-8, or UTF-16 when it starts with a byte
order mark, as Ollama's parser does.
A value runs to the end of the line, or is quoted with " or """ and may then span lines. As in
Ollama, a quoted value ends at the first line end where the text so far, trimmed, ends with its
closing quote; there are no escape sequences. One extension makes every value writable: inside a
"""-quoted value, a line ending in """ followed by one or more backslashes loses one backslash, so
``format`` writes a value line that ends in """ as """\\ (Ollama cannot write such values at all).
'''

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ollamalike import options
from ollamalike.errors import BadRequest
from ollamalike.remote.engine import Engine

INSTRUCTIONS = (
    "FROM", "ADAPTER", "TEMPLATE", "SYSTEM", "PARAMETER", "MESSAGE", "LICENSE", "DRAFT", "RENDERER", "PARSER",
    "REQUIRES", "ENGINE",
)
MESSAGE_ROLES = ("system", "user", "assistant")
# Renderer and parser names as Ollama's registries key them ("qwen3-coder", "harmony", "glm-4.7").
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# golang.org/x/mod/semver, which Ollama checks REQUIRES with (after adding a leading "v"): vMAJOR,
# vMAJOR.MINOR or vMAJOR.MINOR.PATCH[-PRERELEASE][+BUILD], numbers without leading zeros.
_NUM = r"(?:0|[1-9][0-9]*)"
_PRE_ID = r"(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
SEMVER_RE = re.compile(
    rf"v?(?P<major>{_NUM})(?:\.(?P<minor>{_NUM})(?:\.(?P<patch>{_NUM})"
    rf"(?:-(?P<pre>{_PRE_ID}(?:\.{_PRE_ID})*))?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?)?)?"
)

_NEWLINE_RE = re.compile(r"(\r\n|\r|\n)")
_WORD_RE = re.compile(r"[A-Za-z]+")
_PARAM_NAME_RE = re.compile(r"[A-Za-z0-9_]+")
_ESCAPABLE_RE = re.compile(r'"""\\*\Z')
_ESCAPED_RE = re.compile(r'"""\\+\Z')


@dataclass
class Modelfile:
    """A parsed Modelfile. ``from_`` is the first FROM, ``more_from`` the later ones in order.

    ``parameters`` are (name, value) in file order: a known name's value typed, an unknown one's text.
    ``system``/``template`` "" (a quoted empty value) means "clear the inherited one"; None: not given.
    ``requires`` is kept without a leading "v", as Ollama stores it.
    """

    from_: str
    parameters: list[tuple[str, object]] = field(default_factory=list)  # typed scalars (options.parse_parameter)
    template: str | None = None
    system: str | None = None
    adapters: list[str] = field(default_factory=list)
    license: list[str] = field(default_factory=list)
    messages: list[dict[str, str]] = field(default_factory=list)
    more_from: list[str] = field(default_factory=list)
    draft: str | None = None
    renderer: str | None = None
    parser: str | None = None
    requires: str | None = None
    engine: Engine | None = None  # ENGINE instead of FROM: from_ is then ""

    @property
    def froms(self) -> list[str]:
        """Every FROM value, in file order."""
        return [self.from_, *self.more_from]

    @property
    def params(self) -> dict[str, object]:
        """The parameters as the ``params`` layer object (repeated ``stop`` lines grouped into a list)."""
        return options.params_to_json(self.parameters)


def decode(data: bytes) -> str:
    """A Modelfile's bytes as text: UTF-16 (LE or BE) after its byte order mark, else UTF-8 (BOM optional).

    Ollama's parser reads UTF-16 files saved by Windows editors the same way (``unicode.BOMOverride``).
    """
    try:
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            return data.decode("utf-16")  # the BOM says which byte order, and is dropped
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise BadRequest(f"Modelfile is not valid UTF-8 or UTF-16 text: {e.reason} at byte {e.start}") from None


def check_requires(value: str) -> str:
    """A REQUIRES version, checked as Ollama checks it; returned without a leading "v"."""
    if not SEMVER_RE.fullmatch(value):
        raise BadRequest(f'requires must be a valid semver (e.g. 0.14.0), got "{_token(value)}"')
    return value[1:] if value.startswith("v") else value


def check_name(what: str, value: str) -> str:
    """A RENDERER or PARSER name: a short word of letters, digits, '.', '_' and '-'."""
    if not NAME_RE.fullmatch(value):
        raise BadRequest(f'invalid {what} name "{_token(value)}": expected letters, digits, ".", "_" or "-"')
    return value


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
    froms: list[str] = []
    mf = Modelfile(from_="")
    engine_line = from_line = 0
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
                f'unknown instruction "{_token(line)}" (expected FROM, ADAPTER, TEMPLATE, SYSTEM, PARAMETER, '
                "MESSAGE, LICENSE, DRAFT, RENDERER, PARSER, REQUIRES or ENGINE)",
            )
        if not rest.strip():
            raise _error(lineno, f"{instruction} needs a value")
        if instruction == "PARAMETER":
            name, rest = _leading_name(lineno, instruction, rest, _PARAM_NAME_RE, "parameter name")
            name = name.lower()
            value, i = _read_value(src, i, rest)
            mf.parameters.append((name, _parameter(lineno, name, value)))
            continue
        if instruction == "MESSAGE":
            role, rest = _leading_name(lineno, instruction, rest, _WORD_RE, "message role")
            if role not in MESSAGE_ROLES:
                raise _error(lineno, f'message role must be "system", "user" or "assistant", got "{_token(role)}"')
            value, i = _read_value(src, i, rest)
            mf.messages.append({"role": role, "content": value})
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
            continue
        if instruction == "FROM" and not froms:
            from_line = lineno
        try:
            _apply(mf, froms, instruction, value)
        except BadRequest as e:
            raise _error(lineno, e.message) from None
    if mf.engine is not None:
        if froms:
            raise _error(max(from_line, engine_line), "a Modelfile has FROM or ENGINE, not both "
                         "(ENGINE serves the model from a remote engine, FROM from local weights)")
        if mf.adapters:
            raise _error(engine_line, "ADAPTER cannot be used with ENGINE (the remote engine has the weights)")
        return mf
    if not froms:
        raise BadRequest("Modelfile has no FROM line")
    mf.from_, mf.more_from = froms[0], froms[1:]
    return mf


def _parameter(lineno: int, name: str, value: str) -> object:
    """A known parameter's typed value; an unknown name keeps its text, for create to refuse."""
    if name not in options.PARAMETERS:
        return value
    try:
        return options.parse_parameter(name, value)
    except BadRequest as e:
        raise _error(lineno, e.message) from None


def _apply(mf: Modelfile, froms: list[str], instruction: str, value: str) -> None:
    """One instruction with a plain value; a later TEMPLATE, SYSTEM, DRAFT, ... replaces an earlier one."""
    if instruction == "FROM":
        if not value:
            raise BadRequest("FROM needs a model name or a path")
        froms.append(value)
    elif instruction == "ADAPTER":
        if not value:
            raise BadRequest("ADAPTER needs a path")
        mf.adapters.append(value)
    elif instruction == "DRAFT":
        if not value:
            raise BadRequest("DRAFT needs a model name or a path")
        mf.draft = value
    elif instruction == "TEMPLATE":
        mf.template = value
    elif instruction == "SYSTEM":
        mf.system = value
    elif instruction == "RENDERER":
        mf.renderer = check_name("renderer", value)
    elif instruction == "PARSER":
        mf.parser = check_name("parser", value)
    elif instruction == "REQUIRES":
        mf.requires = check_requires(value)
    else:
        mf.license.append(value)


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


def parameter_lines(params: Mapping[str, object] | Sequence[tuple[str, object]]) -> list[str]:
    """``PARAMETER`` lines for a ``params`` object or (name, value) pairs; list values become repeated lines."""
    pairs: list[tuple[str, object]] = []
    for name, value in params.items() if isinstance(params, Mapping) else params:
        if isinstance(value, list):
            pairs.extend((name, item) for item in value)
        else:
            pairs.append((name, value))
    return [f"PARAMETER {name} {quote(options.format_value(value))}" for name, value in pairs]


def format(mf: Modelfile) -> str:
    """The Modelfile text; ``parse(format(mf))`` gives back ``mf``."""
    if mf.engine is not None:
        lines = [f"ENGINE {mf.engine.line_value()}"]
    else:
        lines = [f"FROM {quote(f)}" for f in mf.froms]
    lines += [f"ADAPTER {quote(a)}" for a in mf.adapters]
    if mf.draft is not None:
        lines.append(f"DRAFT {quote(mf.draft)}")
    if mf.template is not None:
        lines.append(f"TEMPLATE {quote(mf.template)}")
    if mf.system is not None:
        lines.append(f"SYSTEM {quote(mf.system)}")
    for instruction, value in (("RENDERER", mf.renderer), ("PARSER", mf.parser), ("REQUIRES", mf.requires)):
        if value is not None:
            lines.append(f"{instruction} {quote(value)}")
    lines += parameter_lines(mf.parameters)
    lines += [f"MESSAGE {m['role']} {quote(m['content'])}" for m in mf.messages]
    lines += [f"LICENSE {quote(text)}" for text in mf.license]
    return "\n".join(lines) + "\n"


def check_draft_path(draft: Path, froms: list[Path | None]) -> None:
    """Ollama's rule: DRAFT must not name the file a FROM line names (symlinks followed)."""
    real = os.path.realpath(draft)
    for path in froms:
        if path is not None and os.path.realpath(path) == real:
            raise BadRequest(f"DRAFT must not reference the same local path as FROM: {str(draft)[:300]}")


def version_key(version: str) -> tuple[object, ...]:
    """A sort key that orders versions by semver precedence ("0.14" = "0.14.0" > "0.14.0-rc1").

    ``version`` must pass ``check_requires``; a version this cannot read (the daemon's own, say) is 0.
    """
    m = SEMVER_RE.fullmatch(version)
    if m is None:
        return (0, 0, 0, (1,))
    core = tuple(int(m.group(g) or 0) for g in ("major", "minor", "patch"))
    pre = m.group("pre")
    if pre is None:
        return (*core, (1,))  # a release sorts after every prerelease of it
    ids = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
    return (*core, (0, *ids))
