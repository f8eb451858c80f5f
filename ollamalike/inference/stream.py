"""Incremental tool-call buffering of generated text (``<think>`` splitting is template.ThinkingParser).

Tokens arrive a few characters at a time: output that might be a tool call is held back until it
is complete, anything else streams at once.
"""

from __future__ import annotations

# How a tool call may begin in model output (bare JSON, Hermes/Qwen, Mistral, Llama 3.1, fenced).
TOOL_PREFIXES = ("{", "[", "<tool_call>", "[TOOL_CALLS]", "<|python_tag|>", "```", "<function")


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
