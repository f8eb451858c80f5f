"""Incremental post-processing of generated text: ``<think>`` splitting and tool-call buffering.

Tokens arrive a few characters at a time, so a tag such as ``</think>`` may be split across
chunks: both classes hold back only the text that could still be the start of a tag, and stream
everything else at once.
"""

from __future__ import annotations

OPEN_THINK = "<think>"
CLOSE_THINK = "</think>"

# How a tool call may begin in model output (bare JSON, Hermes/Qwen, Mistral, Llama 3.1, fenced).
TOOL_PREFIXES = ("{", "[", "<tool_call>", "[TOOL_CALLS]", "<|python_tag|>", "```", "<function")


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``tag``."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


class ThinkSplitter:
    """Splits ``<think>…</think>`` at the start of the output into (thinking, content).

    ``in_thinking`` starts True when the prompt itself already opened the think block (templates
    that prefill ``<think>``).
    """

    def __init__(self, in_thinking: bool = False) -> None:
        self.state = "thinking" if in_thinking else "start"
        self.buffer = ""

    def feed(self, text: str) -> tuple[str, str]:
        self.buffer += text
        thinking, content = "", ""
        while True:
            if self.state == "start":
                stripped = self.buffer.lstrip()
                if stripped.startswith(OPEN_THINK):
                    self.buffer = stripped[len(OPEN_THINK) :]
                    self.state = "opened"
                    continue
                if OPEN_THINK.startswith(stripped):
                    return thinking, content  # still undecided
                self.state = "content"
                continue
            if self.state == "opened":
                # The newline(s) right after <think> are layout, not thinking.
                self.buffer = self.buffer.lstrip("\n")
                if not self.buffer:
                    return thinking, content
                self.state = "thinking"
                continue
            if self.state == "thinking":
                end = self.buffer.find(CLOSE_THINK)
                if end >= 0:
                    thinking += self.buffer[:end]
                    self.buffer = self.buffer[end + len(CLOSE_THINK) :]
                    self.state = "after"
                    continue
                keep = _partial_suffix(self.buffer, CLOSE_THINK)
                thinking += self.buffer[: len(self.buffer) - keep]
                self.buffer = self.buffer[len(self.buffer) - keep :]
                return thinking, content
            if self.state == "after":
                # Models put a blank line between the think block and the answer.
                self.buffer = self.buffer.lstrip()
                if not self.buffer:
                    return thinking, content
                self.state = "content"
                continue
            content += self.buffer
            self.buffer = ""
            return thinking, content

    def flush(self) -> tuple[str, str]:
        rest, self.buffer = self.buffer, ""
        if self.state in ("thinking", "opened"):
            return rest.lstrip("\n"), ""
        if self.state == "after":
            return "", rest.lstrip()
        return "", rest


class ToolBuffer:
    """With tools offered, output that may be a tool call is held back until the end.

    Output that clearly is not a tool call (its first non-blank text cannot start one) streams as
    it comes; otherwise the whole text is returned by ``flush`` for the tool-call parser.
    """

    def __init__(self) -> None:
        self.buffer = ""
        self.streaming = False

    def feed(self, text: str) -> str:
        if self.streaming:
            return text
        self.buffer += text
        head = self.buffer.lstrip()
        if not head:
            return ""
        if any(head.startswith(p) or p.startswith(head) for p in TOOL_PREFIXES):
            return ""
        self.streaming = True
        out, self.buffer = self.buffer, ""
        return out

    def flush(self) -> str:
        out, self.buffer = self.buffer, ""
        return out
