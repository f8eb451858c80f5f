"""``TaggedParser``: the streaming engine of the families whose output is tag-delimited.

A family is a ``TaggedFormat``: an optional thinking block (opening and closing tag), the call
blocks it writes (each an opening and a closing tag and a body decoder from ``parsers.calls``), and
wrapper tokens that carry no text (DeepSeek's ``<｜tool▁calls▁begin｜>``, Cohere's
``<|START_RESPONSE|>``). The parser is a small state machine over a buffer:

- ``start``: only whitespace so far; an opening thinking tag here starts thinking. Thinking also
  starts at once when the prompt already opened the block (the template ended it with the tag); when
  the prompt is not known, when the family's template always does so (``think_prefilled``). With
  ``think: false`` the family's thinking tags are not looked for (the template asked for none).
- ``think``: text up to the closing tag is thinking (leading and trailing whitespace trimmed).
- ``content``: text up to the next call or wrapper tag is content. The end of the buffer that may
  still become a tag is held back, and so is trailing whitespace while a call may follow (the
  whitespace before a call is dropped, as Ollama drops it).
- ``call``: the body up to the closing tag is decoded; a body that is not a call in the family's
  format is content, exactly as generated.

At ``finish`` an unclosed call is a call only when its format can tell a complete body from a cut one
(JSON, Python syntax: the closing tag may have been a stop sequence) and the body decodes; otherwise
its text, opening tag and the whitespace before it included, is content: nothing the model wrote is
lost, and no cut call is ever passed off as a complete one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ollamalike.template.parsers.base import (
    Content,
    Event,
    ParserContext,
    Thinking,
    ToolCall,
    overlap,
)

Decoder = Callable[[str, ParserContext], "list[ToolCall] | None"]
_WS = " \t\r\n"


@dataclass(frozen=True)
class CallFormat:
    open: str
    close: str
    decode: Decoder
    # An unclosed call at the end of the output still counts when its body decodes: only for the
    # formats whose decoder can tell a complete body from a cut one (JSON, Python syntax).
    lenient_end: bool = False


@dataclass(frozen=True)
class TaggedFormat:
    think: tuple[str, str] | None = None
    calls: tuple[CallFormat, ...] = ()
    call_wrappers: tuple[str, ...] = ()   # dropped; whitespace before them is dropped, as before a call
    wrappers: tuple[str, ...] = ()        # dropped, nothing else changes
    think_prefilled: bool = False         # unless think is false, the template ends the prompt in the open tag


def _trailing_ws(text: str) -> int:
    return len(text) - len(text.rstrip(_WS))


class TaggedParser:
    """An ``OutputParser`` for one ``TaggedFormat``; see the module docstring."""

    def __init__(self, fmt: TaggedFormat, ctx: ParserContext) -> None:
        self.fmt = fmt
        self.ctx = ctx
        self.buf = ""
        self.call: CallFormat | None = None
        self.lead_ws = ""  # the whitespace dropped before the open call: given back if it is no call
        self.skip_ws = False
        self.think_lead = False
        self.state = "content"
        if fmt.think is not None and ctx.think is not False:
            # The rendered prompt says whether the block is open; the family's rule stands in for it
            # only when the prompt is not known.
            opened = ctx.prompt_ends_with(fmt.think[0]) or (fmt.think_prefilled and not ctx.prompt)
            self.state = "think" if opened else "start"
            self.think_lead = opened
        self.tags: list[str] = [c.open for c in fmt.calls] + list(fmt.call_wrappers) + list(fmt.wrappers)

    def feed(self, text: str) -> list[Event]:
        self.buf += text
        return self._run(final=False)

    def finish(self) -> list[Event]:
        out = self._run(final=True)
        rest, self.buf = self.buf, ""
        if self.state == "call" and self.call is not None:
            calls = self.call.decode(rest, self.ctx) if rest.strip() and self.call.lenient_end else None
            out.extend(calls if calls else [Content(self.lead_ws + self.call.open + rest)])
        elif self.state == "think":
            if rest.strip(_WS):
                out.append(Thinking(rest.rstrip(_WS)))
        elif rest:
            out.append(Content(rest))
        return out

    def _run(self, final: bool) -> list[Event]:
        out: list[Event] = []
        while self.buf and self._step(out, final):
            pass
        return out

    def _step(self, out: list[Event], final: bool) -> bool:
        """One transition; False: wait for more text."""
        if self.skip_ws or self.think_lead:
            self.buf = self.buf.lstrip(_WS)
            if not self.buf:
                return False
            self.skip_ws = self.think_lead = False
        if self.state == "start":
            return self._start(final)
        if self.state == "think":
            return self._think(out, final)
        if self.state == "call":
            return self._call(out)
        return self._content(out, final)

    def _start(self, final: bool) -> bool:
        assert self.fmt.think is not None
        opening = self.fmt.think[0]
        head = self.buf.lstrip(_WS)
        if head.startswith(opening):
            self.buf = head[len(opening):]
            self.state, self.think_lead = "think", True
            return True
        if not final and (not head or opening.startswith(head)):
            return False  # maybe the opening tag: wait
        self.state = "content"
        return True

    def _think(self, out: list[Event], final: bool) -> bool:
        assert self.fmt.think is not None
        closing = self.fmt.think[1]
        at = self.buf.find(closing)
        if at >= 0:
            text = self.buf[:at].rstrip(_WS)
            if text:
                out.append(Thinking(text))
            self.buf = self.buf[at + len(closing):]
            self.state, self.skip_ws = "content", True
            return True
        if final:
            return False
        hold = overlap(self.buf, closing)
        keep = len(self.buf) - hold
        keep -= _trailing_ws(self.buf[:keep])  # trailing whitespace before the closing tag is trimmed
        if keep > 0:
            out.append(Thinking(self.buf[:keep]))
            self.buf = self.buf[keep:]
        return False

    def _content(self, out: list[Event], final: bool) -> bool:
        found = [(i, t) for t in self.tags if (i := self.buf.find(t)) >= 0]
        if found:
            at, tag = min(found, key=lambda f: (f[0], -len(f[1])))
            before = self.buf[:at]
            self.buf = self.buf[at + len(tag):]
            self.lead_ws = ""
            if tag not in self.fmt.wrappers:
                cut = len(before.rstrip(_WS))
                before, self.lead_ws = before[:cut], before[cut:]
            if before:
                out.append(Content(before))
            call = next((c for c in self.fmt.calls if c.open == tag), None)
            if call is not None:
                self.state, self.call = "call", call
            return True
        if final:
            return False
        hold = max((overlap(self.buf, t) for t in self.tags), default=0)
        keep = len(self.buf) - hold
        if self.fmt.calls:
            keep -= _trailing_ws(self.buf[:keep])
        if keep > 0:
            out.append(Content(self.buf[:keep]))
            self.buf = self.buf[keep:]
        return False

    def _call(self, out: list[Event]) -> bool:
        call = self.call
        assert call is not None
        at = self.buf.find(call.close)
        if at < 0:
            return False
        body = self.buf[:at]
        self.buf = self.buf[at + len(call.close):]
        calls = call.decode(body, self.ctx)
        out.extend(calls if calls else [Content(self.lead_ws + call.open + body + call.close)])
        self.state, self.call, self.skip_ws = "content", None, True
        return True
