"""Separating a model's ``<think>…</think>`` reasoning from its answer, whole or while streaming."""

from __future__ import annotations

OPEN, CLOSE = "<think>", "</think>"


def prompt_opens_thinking(prompt: str, opening: str = OPEN) -> bool:
    """True when the rendered prompt already opened a thinking block (the model continues inside it)."""
    return prompt.rstrip().endswith(opening)


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of text that is a proper prefix of tag."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


class ThinkingParser:
    """Feed output chunks; get (thinking, content) deltas. Tags split across chunks are handled."""

    def __init__(self, opening: str = OPEN, closing: str = CLOSE, started: bool = False) -> None:
        self.opening, self.closing = opening, closing
        self.state = "thinking" if started else "start"
        self.buf = ""

    def feed(self, chunk: str) -> tuple[str, str]:
        self.buf += chunk
        thinking: list[str] = []
        content: list[str] = []
        while self.buf:
            if self.state == "start":
                stripped = self.buf.lstrip()
                if not stripped:
                    return "".join(thinking), "".join(content)
                if stripped.startswith(self.opening):
                    self.buf = stripped[len(self.opening):]
                    self.state = "thinking_lead"
                elif self.opening.startswith(stripped):
                    return "".join(thinking), "".join(content)  # maybe the tag, wait for more
                else:
                    self.state = "content"
            elif self.state == "thinking_lead":
                self.buf = self.buf.lstrip()
                if self.buf:
                    self.state = "thinking"
            elif self.state == "thinking":
                end = self.buf.find(self.closing)
                if end >= 0:
                    thinking.append(self.buf[:end])
                    self.buf = self.buf[end + len(self.closing):]
                    self.state = "after"
                    continue
                keep = _partial_suffix(self.buf, self.closing)
                thinking.append(self.buf[:len(self.buf) - keep])
                self.buf = self.buf[len(self.buf) - keep:]
                break
            elif self.state == "after":
                self.buf = self.buf.lstrip()
                if self.buf:
                    self.state = "content"
            else:
                content.append(self.buf)
                self.buf = ""
        return "".join(thinking), "".join(content)

    def flush(self) -> tuple[str, str]:
        """End of output: whatever is buffered belongs to the current part."""
        rest, self.buf = self.buf, ""
        if self.state in ("thinking", "thinking_lead"):
            return rest, ""
        return "", rest


def split_thinking(text: str, opening: str = OPEN, closing: str = CLOSE, started: bool = False) -> tuple[str, str]:
    """(thinking, content) of a complete output."""
    parser = ThinkingParser(opening, closing, started)
    t1, c1 = parser.feed(text)
    t2, c2 = parser.flush()
    return (t1 + t2).rstrip(), c1 + c2
