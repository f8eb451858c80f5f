"""What ``run`` and the REPL share: streaming one chat answer to the terminal (word-wrapped, thinking
dimmed), Ollama's ``--verbose`` statistics, and finding or pulling the model first.

A leaf under ``run.py`` and ``repl.py`` (neither imports the other at module level).
"""

from __future__ import annotations

import json
import shutil
import sys
from typing import Any, TextIO

import click

from ollamalike.client import Client
from ollamalike.errors import NotFound
from ollamalike.names import ModelName


# -- output helpers --------------------------------------------------------------------------------
def go_duration(ns: int) -> str:
    """Go's ``time.Duration.String()``: "512µs", "12.345ms", "1.5s", "1m2.3s"."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000:
        return f"{sign}{ns}ns"
    if ns < 1_000_000:
        return sign + _trim(ns / 1_000, 3) + "µs"
    if ns < 1_000_000_000:
        return sign + _trim(ns / 1_000_000, 6) + "ms"
    hours, rem = divmod(ns, 3_600_000_000_000)
    minutes, rem = divmod(rem, 60_000_000_000)
    seconds = _trim(rem / 1_000_000_000, 9) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}"
    if minutes:
        return f"{sign}{minutes}m{seconds}"
    return sign + seconds


def _trim(value: float, digits: int) -> str:
    text = f"{value:.{digits}f}".rstrip("0").rstrip(".")
    return text or "0"


def format_stats(final: dict[str, Any]) -> str:
    """Ollama's ``--verbose`` summary."""
    lines = [
        f"total duration:       {go_duration(int(final.get('total_duration', 0)))}",
        f"load duration:        {go_duration(int(final.get('load_duration', 0)))}",
    ]
    p_count, p_ns = int(final.get("prompt_eval_count", 0)), int(final.get("prompt_eval_duration", 0))
    lines.append(f"prompt eval count:    {p_count} token(s)")
    if p_ns > 0:
        lines.append(f"prompt eval duration: {go_duration(p_ns)}")
        lines.append(f"prompt eval rate:     {p_count / (p_ns / 1e9):.2f} tokens/s")
    e_count, e_ns = int(final.get("eval_count", 0)), int(final.get("eval_duration", 0))
    lines.append(f"eval count:           {e_count} token(s)")
    if e_ns > 0:
        lines.append(f"eval duration:        {go_duration(e_ns)}")
        lines.append(f"eval rate:            {e_count / (e_ns / 1e9):.2f} tokens/s")
    return "\n".join(lines)


class WordWrapper:
    """Streams text, moving a word that would cross the right edge to the next line.

    A word is held back until it is complete (or fills a whole line), so the decision can be made.
    """

    def __init__(self, width: int) -> None:
        self.width = max(10, width)
        self.col = 0
        self.word = ""

    def feed(self, text: str) -> str:
        out: list[str] = []
        for ch in text:
            if ch == "\n":
                out.append(self._take_word())
                out.append("\n")
                self.col = 0
            elif ch in " \t":
                out.append(self._take_word())
                if self.col + 1 >= self.width:
                    out.append("\n")
                    self.col = 0
                elif self.col > 0:
                    out.append(ch)
                    self.col += 1
            else:
                self.word += ch
                if len(self.word) >= self.width:
                    out.append(self._take_word())
        return "".join(out)

    def flush(self) -> str:
        return self._take_word()

    def _take_word(self) -> str:
        word, self.word = self.word, ""
        if not word:
            return ""
        prefix = ""
        if self.col > 0 and self.col + len(word) > self.width:
            prefix = "\n"
            self.col = 0
        self.col += len(word)
        if self.col >= self.width:
            self.col = 0
            return prefix + word + "\n"
        return prefix + word


def parse_think_flag(value: str | None) -> bool | str | None:
    """``--think`` as Ollama's CLI reads it: bare or ``true``, ``false``, or a level."""
    if value is None:
        return None
    if value in ("", "true"):
        return True
    if value == "false":
        return False
    if value in ("high", "medium", "low", "max"):  # Ollama's ThinkValue levels
        return value
    raise click.BadParameter(f"invalid value {value!r} (must be true, false, high, medium, low, or max)",
                             param_hint="'--think'")


class Printer:
    """Writes streamed content (and thinking, dimmed on a terminal, unless ``show_thinking`` is off:
    ``--hidethinking``) to ``out``."""

    def __init__(self, out: TextIO, wordwrap: bool, show_thinking: bool = True) -> None:
        self.out = out
        self.show_thinking = show_thinking
        self.tty = out.isatty()
        width = shutil.get_terminal_size((80, 24)).columns if self.tty else 0
        self.wrapper = WordWrapper(width - 5) if wordwrap and self.tty and width > 20 else None
        self.thinking = False
        self.wrote_any = False
        self.last_char = ""

    def write(self, text: str) -> None:
        if self.wrapper is not None:
            text = self.wrapper.feed(text)
        if text:
            self.out.write(text)
            self.out.flush()
            self.wrote_any = True
            self.last_char = text[-1]

    def thinking_text(self, text: str) -> None:
        if not self.show_thinking:
            return
        if not self.thinking:
            self.thinking = True
            self.write("Thinking...\n")
            if self.tty:
                self.out.write("\x1b[2m")
        self.write(text)

    def content_text(self, text: str) -> None:
        if self.thinking:
            self.thinking = False
            if self.wrapper is not None:
                self.write(self.wrapper.flush())
            if self.tty:
                self.out.write("\x1b[0m")
            self.write("\n...done thinking.\n\n")
        self.write(text)

    def finish(self) -> None:
        if self.wrapper is not None:
            rest = self.wrapper.flush()
            if rest:
                self.out.write(rest)
                self.last_char = rest[-1]
        if self.thinking and self.tty:
            self.out.write("\x1b[0m")
        if self.wrote_any and self.last_char != "\n":
            self.out.write("\n")
        self.out.flush()


def stream_chat(client: Client, body: dict[str, Any], printer: Printer) -> tuple[str, dict[str, Any]]:
    """Stream one /api/chat answer to ``printer``: (assistant content, final object)."""
    content: list[str] = []
    final: dict[str, Any] = {}
    try:
        for chunk in client.stream("POST", "/api/chat", body):
            message = chunk.get("message") or {}
            if message.get("thinking"):
                printer.thinking_text(message["thinking"])
            if message.get("content"):
                printer.content_text(message["content"])
                content.append(message["content"])
            for call in message.get("tool_calls") or []:
                fn = call.get("function", {})
                printer.content_text(f"{fn.get('name')}({json.dumps(fn.get('arguments', {}))})\n")
            if chunk.get("done"):
                final = chunk
    finally:
        printer.finish()
    return "".join(content), final


# -- model presence ----------------------------------------------------------------------------------
def show_or_pull(client: Client, model: str, insecure: bool = False) -> dict[str, Any]:
    """/api/show for ``model``, pulling it first when it is not present locally (as Ollama's run does)."""
    ModelName.parse(model)
    try:
        info: dict[str, Any] = client.json("POST", "/api/show", {"model": model})
        return info
    except NotFound:
        pass
    from ollamalike.cli.progress import Progress

    click.echo(f"pulling model '{model}'", err=True)
    progress = Progress(out=sys.stderr)
    try:
        for item in client.stream("POST", "/api/pull", {"model": model, "insecure": insecure, "stream": True}):
            progress.update(item)
    finally:
        progress.finish()
    shown: dict[str, Any] = client.json("POST", "/api/show", {"model": model})
    return shown
