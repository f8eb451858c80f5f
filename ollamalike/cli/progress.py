"""Rendering pull/push/create status streams: one progress bar per layer, like Ollama's.

On a terminal the block of lines is redrawn in place (at most ~10 times a second); otherwise
each status is printed once as a plain line, and a layer gets a line when it starts and when it
completes, so logs stay readable. Speed is a moving average over the last few seconds.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, TextIO

REDRAW_INTERVAL = 0.1
RATE_WINDOW = 5.0


def human_bytes(n: float) -> str:
    """Decimal units, as Ollama prints them: 512 B, 1.5 KB, 4.7 GB."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            value = n / scale
            return f"{value:.0f} {unit}" if value >= 100 else f"{value:.1f} {unit}".replace(".0 ", " ")
    return f"{int(n)} B"


def human_duration(seconds: float) -> str:
    """``1h2m``, ``2m3s``, ``45s``."""
    s = max(0, int(round(seconds)))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    if h:
        return f"{h}h{m}m"
    if m:
        return f"{m}m{sec}s"
    return f"{sec}s"


@dataclass
class Bar:
    status: str
    total: int
    completed: int = 0
    samples: deque[tuple[float, int]] = field(default_factory=deque)
    announced_done: bool = False

    def update(self, completed: int, total: int, now: float) -> None:
        self.total = total or self.total
        self.completed = completed
        self.samples.append((now, completed))
        while len(self.samples) > 2 and now - self.samples[0][0] > RATE_WINDOW:
            self.samples.popleft()

    @property
    def done(self) -> bool:
        return self.total > 0 and self.completed >= self.total

    def rate(self) -> float:
        if len(self.samples) < 2:
            return 0.0
        (t0, c0), (t1, c1) = self.samples[0], self.samples[-1]
        return (c1 - c0) / (t1 - t0) if t1 > t0 else 0.0

    def render(self, width: int) -> str:
        pct = int(100 * self.completed / self.total) if self.total else 0
        if self.done:
            size = human_bytes(self.total)
        else:
            size = f"{human_bytes(self.completed)}/{human_bytes(self.total)}"
        tail = f" {size}"
        rate = self.rate()
        if not self.done and rate > 0:
            tail += f"  {human_bytes(rate)}/s  {human_duration((self.total - self.completed) / rate)}"
        head = f"{self.status}... {pct:3d}% "
        bar_width = max(10, min(50, width - len(head) - len(tail) - 3))
        filled = int(bar_width * pct / 100)
        return f"{head}▕{'█' * filled}{' ' * (bar_width - filled)}▏{tail}"


class Progress:
    """Feed it each status dict with ``update``; call ``finish`` at the end."""

    def __init__(self, out: TextIO | None = None, tty: bool | None = None) -> None:
        self.out = out or sys.stderr
        self.tty = self.out.isatty() if tty is None else tty
        self.lines: list[str | Bar] = []  # statuses and bars, in order of first appearance
        self.bars: dict[str, Bar] = {}
        self.drawn = 0
        self.last_draw = 0.0

    def update(self, item: dict[str, Any]) -> None:
        status = str(item.get("status", ""))
        if not status:
            return
        now = time.monotonic()
        digest = item.get("digest")
        total = item.get("total")
        if digest and isinstance(total, int) and total > 0:
            bar = self.bars.get(digest)
            if bar is None:
                bar = self.bars[digest] = Bar(status, total)
                self.lines.append(bar)
                if not self.tty:
                    self._plain(f"{status} ({human_bytes(total)})")
            completed = item.get("completed")
            bar.update(completed if isinstance(completed, int) else 0, total, now)
            if not self.tty and bar.done and not bar.announced_done:
                bar.announced_done = True
                self._plain(bar.render(80))
        else:
            if self.lines and self.lines[-1] == status:
                return
            self.lines.append(status)
            if not self.tty:
                self._plain(status)
        if self.tty and (now - self.last_draw >= REDRAW_INTERVAL or status == "success"):
            self.redraw()

    def _plain(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def redraw(self) -> None:
        width = shutil.get_terminal_size((80, 24)).columns
        parts = []
        if self.drawn:
            parts.append(f"\x1b[{self.drawn}F")  # back to the first line we drew
        for line in self.lines:
            text = line.render(width) if isinstance(line, Bar) else line
            parts.append("\x1b[2K" + text[: max(20, width - 1)] + "\n")
        self.out.write("".join(parts))
        self.out.flush()
        self.drawn = len(self.lines)
        self.last_draw = time.monotonic()

    def finish(self) -> None:
        if self.tty and self.lines:
            self.redraw()
