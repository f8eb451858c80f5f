"""Terminal output shared by CLI commands: aligned tables, human sizes and times, the way Ollama prints them."""

from __future__ import annotations

import math
import time

# Not typing.TYPE_CHECKING, and datetime only for annotations: the CLI's fast path (cli/fast.py) prints
# through this module and pays for every import (issue 20).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

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


_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _number(text: str, start: int, width: int) -> int:
    part = text[start : start + width]
    if len(part) != width or not (part.isascii() and part.isdigit()):
        raise ValueError(text)
    return int(part)


def parse_epoch(text: str | None) -> float | None:
    """An RFC 3339 timestamp (Go's format, nanoseconds allowed) as seconds since the epoch, or None.

    Also what datetime.fromisoformat reads of it: a space for the T, no offset (UTC), no seconds or no
    time. By hand, with neither datetime nor re: the CLI's fast path pays for every import (issue 20)."""
    s = (text or "").strip()
    try:
        if s[4:5] != "-" or s[7:8] != "-":
            return None
        year, month, day = _number(s, 0, 4), _number(s, 5, 2), _number(s, 8, 2)
        hour = minute = second = offset = 0
        fraction = 0.0
        pos = 10
        if pos < len(s):
            if s[pos] not in "Tt " or s[pos + 3 : pos + 4] != ":":
                return None
            hour, minute = _number(s, pos + 1, 2), _number(s, pos + 4, 2)
            pos += 6
            if s[pos : pos + 1] == ":":
                second = _number(s, pos + 1, 2)
                pos += 3
                if s[pos : pos + 1] in (".", ","):
                    end = pos + 1
                    while end < len(s) and s[end].isascii() and s[end].isdigit():
                        end += 1
                    fraction = float("0." + (s[pos + 1 : min(end, pos + 10)] or "0"))
                    pos = end
            zone = s[pos:].lstrip()
            if zone in ("Z", "z"):
                pass
            elif zone[:1] in ("+", "-") and len(zone) in (3, 5, 6) and (len(zone) != 6 or zone[3] == ":"):
                offset = _number(zone, 1, 2) * 3600 + (_number(zone, len(zone) - 2, 2) * 60 if len(zone) > 3 else 0)
                offset = -offset if zone[0] == "-" else offset
            elif zone:
                return None
    except ValueError:
        return None
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    if not (year >= 1 and 1 <= month <= 12 and 1 <= day <= _MONTH_DAYS[month - 1] - (month == 2 and not leap)
            and hour < 24 and minute < 60 and second < 60):
        return None
    # Days from 1970-01-01 (the proleptic Gregorian calendar, in 400-year eras of 146097 days).
    y = year - (month <= 2)
    era, yoe = divmod(y, 400)
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    return days * 86400 + hour * 3600 + minute * 60 + second + fraction - offset


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
    moment = parse_epoch(when) if isinstance(when, str) else when.timestamp() if when is not None else None
    if moment is None:
        return "Never"
    delta = (time.time() if now is None else now.timestamp()) - moment
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
