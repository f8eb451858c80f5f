"""Tool calls parsed out of model output as it streams (the formats are template.toolformats).

``ToolParser`` is fed text as it is generated, like Ollama's ``tools.Parser``: content comes out at
once except a possible partial tag at its end; each call comes out as soon as its JSON closes; the
tags and JSON of a call never show up as content; text after a call is content again. With
``names`` given, only calls of those tools count: anything else (a structured answer that has a
``"name"`` key) is content, exactly as generated. ``parse_tool_calls`` is the same over a whole text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ollamalike.template.toolformats import (
    BARE,
    KNOWN_TAGS,
    Tag,
    calls_in,
    jinja_tag,
    tag_for,
    tags_for,
    template_prefix,
    tool_names,
)
from ollamalike.template.values import ToolCall

if TYPE_CHECKING:
    from ollamalike.template.render import ModelLike

__all__ = ["KNOWN_TAGS", "Tag", "ToolParser", "jinja_tag", "parse_tool_calls", "parse_tool_text", "tag_for",
           "tags_for", "template_prefix", "tool_names"]

_WS = " \t\r\n"
# Letters that may stand outside strings in JSON (true, false, null, exponents): any other
# character there means the text is prose, not a call, and need not be held back any longer.
_JSON_BARE = set("{}[],:-+.0123456789eEtrufalsn" + _WS)
_MISTRAL_NAME = re.compile(r"[A-Za-z_][\w.\-]*")
_MISTRAL_ARGS = "[ARGS]"

# -- the streaming parser --------------------------------------------------------------------------
class _ValueEnd:
    """Finds where one JSON value (object or list) ends in a growing text, resuming where it left off."""

    def __init__(self, start: int) -> None:
        self.pos = start
        self.depth = 0
        self.in_string = False
        self.escaped = False

    def scan(self, text: str) -> tuple[str, int]:
        """("more", _), ("end", index after the value) or ("bad", index of a non-JSON character)."""
        i = self.pos
        while i < len(text):
            c = text[i]
            if self.in_string:
                if self.escaped:
                    self.escaped = False
                elif c == "\\":
                    self.escaped = True
                elif c == '"':
                    self.in_string = False
            elif c == '"':
                self.in_string = True
            elif c in "{[":
                self.depth += 1
            elif c in "}]":
                self.depth -= 1
                if self.depth == 0:
                    return "end", i + 1
            elif c not in _JSON_BARE:
                return "bad", i
            i += 1
        self.pos = i
        return "more", i


@dataclass
class _Group:
    """One tag and the calls after it. ``buf[0]`` is always where its not yet emitted text starts."""

    tag: Tag
    pos: int                       # scan position in the parser's buffer
    phase: str = "open"            # open (before a value) | value | after (a value was a call)
    scanner: _ValueEnd | None = None
    vstart: int = 0
    name: str | None = None        # Mistral's name[ARGS]{…}: the name before the arguments
    calls: int = 0                 # calls this group has given


class ToolParser:
    """Streams model output as (content, calls); see the module docstring.

    ``feed(text)`` and ``flush()`` (at the end) return ``(content, calls)``; each call is
    ``{"function": {"index", "name", "arguments": dict}}``, indexed from 0 over the whole output.
    """

    def __init__(self, tags: Sequence[Tag] = KNOWN_TAGS, names: Collection[str] | None = None) -> None:
        by_length = sorted(tags, key=lambda t: -len(t.open))
        self.anywhere = [t for t in by_length if t.anywhere and t.open]
        self.at_start_tags = [t for t in by_length if not t.anywhere and t.open]
        self.names = set(names) if names is not None else None
        self.buf = ""
        self.at_start = True      # only whitespace so far: bare JSON may still be a call
        self.skip_ws = False      # just after a call: whitespace before the next text is dropped
        self.group: _Group | None = None
        self.count = 0

    def feed(self, text: str) -> tuple[str, list[ToolCall]]:
        self.buf += text
        return self._run(final=False)

    def flush(self) -> tuple[str, list[ToolCall]]:
        content, calls = self._run(final=True)
        rest, self.buf = self.buf, ""
        return content + rest, calls

    # Each step consumes the front of ``buf`` and says whether to go on (False: wait for more text).
    def _run(self, final: bool) -> tuple[str, list[ToolCall]]:
        out: list[str] = []
        calls: list[ToolCall] = []
        while self.buf:
            step = self._seek(out, final) if self.group is None else self._in_group(self.group, out, calls, final)
            if not step:
                break
        return "".join(out), calls

    def _emit(self, out: list[str], n: int) -> None:
        text, self.buf = self.buf[:n], self.buf[n:]
        if text:
            out.append(text)
            if text.strip(_WS):
                self.at_start = False

    def _seek(self, out: list[str], final: bool) -> bool:
        if self.skip_ws:
            stripped = self.buf.lstrip(_WS)
            self.buf = stripped
            if not stripped:
                return False
            self.skip_ws = False
        if self.at_start:
            head = self.buf.lstrip(_WS)
            lead = len(self.buf) - len(head)
            if not head:
                if final:
                    self._emit(out, len(self.buf))
                return False
            tags = (*self.anywhere, *self.at_start_tags)
            # "[" may still become "[TOOL_CALLS]", "```" may become "```json": wait to know.
            if not final and any(t.open.startswith(head) and t.open != head for t in tags):
                return False
            for tag in tags:
                if head.startswith(tag.open):
                    self.group = _Group(tag, lead + len(tag.open))
                    return True
            if head[0] in "{[":
                self.group = _Group(BARE, lead)
                return True
            self.at_start = False
        found = [(i, t) for t in self.anywhere if (i := self.buf.find(t.open)) >= 0]
        if found:
            at, tag = min(found, key=lambda f: f[0])  # longest first among equals (min is stable)
            if not final and any(len(t.open) > len(tag.open) and t.open.startswith(self.buf[at:])
                                 for t in self.anywhere):
                self._emit(out, at)  # a longer tag may still be coming here
                return False
            self._emit(out, at)
            self.group = _Group(tag, len(tag.open))
            return True
        hold = 0 if final else self._partial_tag_len()
        self._emit(out, len(self.buf) - hold)
        return False

    def _partial_tag_len(self) -> int:
        """Length of the longest end of ``buf`` that could begin a tag."""
        best = 0
        for tag in self.anywhere:
            for n in range(min(len(tag.open) - 1, len(self.buf)), best, -1):
                if self.buf.endswith(tag.open[:n]):
                    best = n
                    break
        return best

    def _fail(self, out: list[str], n: int) -> bool:
        """Not a call after all: the first ``n`` characters are content, exactly as generated."""
        group, self.group = self.group, None
        if group is not None and group.calls:
            # The group already gave calls: the whitespace after them is dropped, as after a group.
            lead = len(self.buf) - len(self.buf.lstrip(_WS))
            self.buf, n = self.buf[lead:], n - lead
        self._emit(out, n)
        self.at_start = False
        return True

    def _end_group(self, n: int) -> bool:
        self.buf = self.buf[n:]
        self.group = None
        self.at_start = False
        self.skip_ws = True
        return True

    def _in_group(self, g: _Group, out: list[str], calls: list[ToolCall], final: bool) -> bool:
        buf = self.buf
        if g.phase in ("open", "after"):
            i = g.pos
            while i < len(buf) and buf[i] in _WS:
                i += 1
            g.pos = i
            rest = buf[i:]
            if g.phase == "after":
                if g.tag.close and rest.startswith(g.tag.close):
                    return self._end_group(i + len(g.tag.close))
                if g.tag.close is None and rest[:1] == ";":  # Llama 3.1: {…}; {…}
                    g.pos = i + 1
                    return True
                if not rest or (g.tag.close and g.tag.close.startswith(rest)):
                    if final:  # an unclosed (or half-closed) group at the end of the output
                        return self._end_group(len(buf))
                    return False
                # Another tag ("[TOOL_CALLS]a[ARGS]{…}[TOOL_CALLS]b…") opens a group of its own.
                tagged = [t for t in self.anywhere if rest.startswith(t.open) or t.open.startswith(rest)]
                if tagged and not final and not any(rest.startswith(t.open) for t in tagged):
                    return False
                if rest[0] not in "{[" or tagged:
                    return self._end_group(i)
            elif not rest:
                return self._fail(out, len(buf)) if final else False
            if rest[0] in "{[":
                g.phase, g.vstart, g.scanner = "value", i, _ValueEnd(i)
                return True
            if g.tag.open == "[TOOL_CALLS]" and g.name is None:
                return self._mistral_name(g, out, final)
            # The tag is not followed by a call: it is content, and so is what follows it.
            return self._fail(out, i)
        assert g.scanner is not None
        state, end = g.scanner.scan(buf)
        if state == "more":
            return self._fail(out, len(buf)) if final else False
        if state == "bad":
            return self._fail(out, end)
        try:
            # strict=False: models write raw newlines inside argument strings (code, multi-line text).
            value = json.loads(buf[g.vstart:end], strict=False)
        except ValueError:
            return self._fail(out, end)
        if g.name is not None:
            value = {"name": g.name, "arguments": value}
        found = calls_in(value, self.names)
        if found is None:
            return self._fail(out, end)
        for call in found:
            calls.append({"function": {"index": self.count, "name": call["name"], "arguments": call["arguments"]}})
            self.count += 1
        self.buf = buf[end:]
        g.calls += len(found)
        g.phase, g.pos, g.scanner, g.name = "after", 0, None, None
        return True

    def _mistral_name(self, g: _Group, out: list[str], final: bool) -> bool:
        """``[TOOL_CALLS]get_weather[ARGS]{…}``: the name, then the arguments object."""
        rest = self.buf[g.pos:]
        m = _MISTRAL_NAME.match(rest)
        if m is None:
            return self._fail(out, g.pos)
        after = rest[m.end():]
        if after.startswith(_MISTRAL_ARGS):
            g.name = m.group(0)
            g.pos += m.end() + len(_MISTRAL_ARGS)
            return True
        if not final and _MISTRAL_ARGS.startswith(after):
            return False
        return self._fail(out, g.pos)


def parse_tool_text(text: str, tags: Sequence[Tag] = KNOWN_TAGS,
                    names: Collection[str] | None = None) -> tuple[str, list[ToolCall]]:
    """(content, calls) of a whole output: what the streaming parser gives fed it at once."""
    parser = ToolParser(tags, names)
    content, calls = parser.feed(text)
    rest, more = parser.flush()
    return content + rest, calls + more


def parse_tool_calls(model: ModelLike | None, text: str, tools: object = None) -> list[ToolCall] | None:
    """``[{"function": {"index", "name", "arguments": dict}}]`` in a model's whole output, or None.

    The tag the model's template writes before calls is recognised, and so are the well-known
    ones. With ``tools``, only calls of those tools count."""
    names = tool_names(tools) if tools is not None else None
    return parse_tool_text(text, tags_for(model), names)[1] or None
