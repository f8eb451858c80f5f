"""Terminal output shared by CLI commands: aligned tables, human sizes and times, the way Ollama prints them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timezone

KB, MB, GB, TB = 1000, 1000**2, 1000**3, 1000**4


def human_bytes(size: int | float) -> str:
    """Decimal units as Ollama's CLI shows them: "512 B", "1.5 KB", "4.7 GB", "13 GB"."""
    b = int(size)
    units = [(limit, name) for limit, name in ((TB, "TB"), (GB, "GB"), (MB, "MB"), (KB, "KB")) if b >= limit]
    if not units:
        return f"{b} B"
    limit, unit = units[0]
    value = b / limit
    if value >= 10 or value == math.trunc(value):
        return f"{int(value)} {unit}"
    return f"{value:.1f} {unit}"


def parse_time(text: str) -> datetime | None:
    """An RFC 3339 timestamp (Go's format, nanoseconds allowed) as an aware datetime, or None."""
    if not text:
        return None
    value = text.strip().replace("Z", "+00:00")
    # Python accepts at most microseconds: cut a longer fraction to six digits.
    if "." in value:
        head, _, rest = value.partition(".")
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        value = f"{head}.{digits[:6].ljust(6, '0')}{rest}"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def human_duration(seconds: float) -> str:
    """Docker/Ollama-style rough durations: "Less than a second", "About a minute", "3 weeks"."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = round(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(seconds / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // (24 * 7)} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // (24 * 30)} months"
    return f"{hours // (24 * 365)} years"


def human_time(when: datetime | str | None, now: datetime | None = None) -> str:
    """"2 minutes ago", "About an hour from now", or "Never" for a missing time."""
    moment = parse_time(when) if isinstance(when, str) else when
    if moment is None:
        return "Never"
    now = now or datetime.now(timezone.utc)
    delta = (now - moment).total_seconds()
    if delta >= 0:
        return f"{human_duration(delta)} ago"
    return f"{human_duration(-delta)} from now"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], padding: int = 4) -> str:
    """Left-aligned columns separated by at least ``padding`` spaces; no trailing spaces."""
    all_rows = [list(headers), *[list(r) for r in rows]]
    widths = [max(len(r[i]) for r in all_rows) for i in range(len(headers))]
    lines = []
    for r in all_rows:
        cells = [cell.ljust(widths[i] + padding) if i < len(r) - 1 else cell for i, cell in enumerate(r)]
        lines.append("".join(cells).rstrip())
    return "\n".join(lines)


def indented_table(rows: Sequence[Sequence[str]], indent: int = 4, padding: int = 4) -> list[str]:
    """Key/value rows for ``show`` sections: every line indented, columns aligned."""
    if not rows:
        return []
    width = max(len(r[0]) for r in rows)
    out = []
    for key, *rest in rows:
        value = " ".join(rest)
        line = " " * indent + (key.ljust(width + padding) + value if value else key)
        out.append(line.rstrip())
    return out
