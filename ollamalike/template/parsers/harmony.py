"""gpt-oss's harmony format: messages ``<|start|>ROLE<|channel|>CHANNEL [to=RECIPIENT] [<|constrain|>json]
<|message|>TEXT<|end|>`` (a call ends in ``<|call|>``, the last answer in ``<|return|>``).

The prompt ends in ``<|start|>assistant``, so the output begins inside a header. Channel
``analysis`` is thinking, ``final`` (and ``commentary`` with no recipient) is content, and a message
with a recipient ``to=functions.NAME`` is a tool call whose text is the JSON arguments: it comes out
as a ``ToolCall`` when its message ends (or at the end of the output). Arguments that are not a JSON
object make the call's text content, as generated.
"""

from __future__ import annotations

import json

from ollamalike.jsontypes import JSONValue
from ollamalike.template.parsers.base import Content, Event, ParserContext, Thinking, ToolCall, overlap

START, MESSAGE, CHANNEL, CONSTRAIN = "<|start|>", "<|message|>", "<|channel|>", "<|constrain|>"
ENDS = ("<|end|>", "<|call|>", "<|return|>")
IMPLICIT_START = START + "assistant"


def _header(raw: str) -> tuple[str, str | None]:
    """(channel, recipient or None) of a message header."""
    raw = raw.replace(CONSTRAIN, " " + CONSTRAIN)
    channel = ""
    at = raw.find(CHANNEL)
    if at >= 0:
        after = raw[at + len(CHANNEL):]
        words = after.split(None, 1)
        channel = words[0] if words else ""
        raw = raw[:at] + " " + (words[1] if len(words) > 1 else "")
    recipient = next((w[3:] for w in raw.split() if w.startswith("to=")), None)
    return channel, recipient


class HarmonyParser:
    """An ``OutputParser`` for harmony output; see the module docstring."""

    def __init__(self, ctx: ParserContext) -> None:
        self.ctx = ctx
        self.buf = IMPLICIT_START
        self.state = "seek"            # seek (between messages) | header | body
        self.kind = "content"          # the open message: content | thinking | call
        self.recipient: str | None = None
        self.args: list[str] = []

    def feed(self, text: str) -> list[Event]:
        self.buf += text
        out: list[Event] = []
        while self._step(out, final=False):
            pass
        return out

    def finish(self) -> list[Event]:
        out: list[Event] = []
        while self._step(out, final=True):
            pass
        if self.state == "body":
            self._emit(out, self.buf)
            self._end(out)
        elif self.state == "header" and self.buf.strip():
            out.append(Content(self.buf))  # a header that never opened its message: keep the text
        elif self.state == "seek" and self.buf.strip():
            out.append(Content(self.buf))
        self.buf = ""
        return out

    def _step(self, out: list[Event], final: bool) -> bool:
        if self.state == "seek":
            at = self.buf.find(START)
            if at < 0:
                # Text outside any message (a model that skipped the header): content, as Ollama keeps it.
                keep = len(self.buf) - (0 if final else overlap(self.buf, START))
                if keep > 0 and self.buf[:keep].strip():
                    out.append(Content(self.buf[:keep]))
                self.buf = self.buf[keep:] if keep > 0 else self.buf
                return False
            if self.buf[:at].strip():
                out.append(Content(self.buf[:at]))
            self.buf = self.buf[at + len(START):]
            self.state = "header"
            return True
        if self.state == "header":
            at = self.buf.find(MESSAGE)
            if at < 0:
                return False
            channel, self.recipient = _header(self.buf[:at])
            self.buf = self.buf[at + len(MESSAGE):]
            self.kind = "call" if self.recipient else "thinking" if channel == "analysis" else "content"
            self.state = "body"
            return True
        found = [(i, e) for e in ENDS if (i := self.buf.find(e)) >= 0]
        if found:
            at, end = min(found)
            self._emit(out, self.buf[:at])
            self.buf = self.buf[at + len(end):]
            self._end(out)
            self.state = "seek"
            return True
        keep = len(self.buf) - (0 if final else max(overlap(self.buf, e) for e in ENDS))
        self._emit(out, self.buf[:keep])
        self.buf = self.buf[keep:]
        return False

    def _emit(self, out: list[Event], text: str) -> None:
        if not text:
            return
        if self.kind == "call":
            self.args.append(text)
        elif self.kind == "thinking":
            out.append(Thinking(text))
        else:
            out.append(Content(text))

    def _end(self, out: list[Event]) -> None:
        """A message ended: a call's arguments are complete now."""
        if self.kind == "call" and self.recipient is not None:
            raw = "".join(self.args)
            name = self.recipient.removeprefix("functions.")
            try:
                args: JSONValue = json.loads(raw, strict=False) if raw.strip() else {}
            except ValueError:
                args = None
            if isinstance(args, dict):
                out.append(ToolCall(name, args))
            else:
                out.append(Content(raw))
        self.kind, self.recipient, self.args = "content", None, []
