"""The value grammar of settings: Go-style durations, byte sizes, integers and on/off switches.

Pure functions over an environment mapping or a string, each raising ``BadRequest`` with the variable's name;
``config`` (the only reader of ``os.environ``) builds its ``Config`` with them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ollamalike.config_cli import env_value as _get
from ollamalike.errors import BadRequest

_DURATION_RE = re.compile(r"(-?\d+(?:\.\d+)?|-?\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: str | int | float) -> float:
    """Seconds from a number of seconds or a Go duration string ("5m", "1h30m", "-1").

    A negative result means "forever"; 0 means "at once". Used for keep_alive everywhere.
    """
    if isinstance(value, bool):
        raise BadRequest(f"invalid duration: {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    text = value.strip()
    if not text:
        raise BadRequest("invalid duration: empty string")
    try:
        return float(text)
    except ValueError:
        pass
    sign = 1.0
    if text[0] in "+-":
        sign = -1.0 if text[0] == "-" else 1.0
        text = text[1:]
    pos, total = 0, 0.0
    for m in _DURATION_RE.finditer(text):
        # Only the leading sign applies, as in Go: "1h-5m" and "--5m" are invalid.
        if m.start() != pos or m.group(1).startswith("-"):
            pos = -1
            break
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    if pos != len(text) or pos == 0:
        raise BadRequest(f"invalid duration: {value!r}")
    return sign * total


def as_bool(value: str | None, default: bool = False) -> bool:
    if value is None:
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def env_int(env: Mapping[str, str], name: str, default: int) -> int:
    value = _get(env, name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise BadRequest(f"OLLAMALIKE_{name} must be an integer, got {value!r}") from None


def env_positive(env: Mapping[str, str], name: str, default: int) -> int:
    value = env_int(env, name, default)
    if value < 1:
        raise BadRequest(f"OLLAMALIKE_{name} must be a positive integer, got {value}")
    return value


_SIZE_RE = re.compile(r"(\d+(?:\.\d+)?|\.\d+)\s*([kmgt]i?b|b)?", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
               "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def env_byte_size(env: Mapping[str, str], name: str, default: int) -> int:
    """Bytes: a whole number, or a number with a unit (``512MiB``, ``2GiB``, ``1.5GB``); 0 is allowed."""
    value = _get(env, name)
    if value is None or not value.strip():
        return default
    m = _SIZE_RE.fullmatch(value.strip())
    if m is None:
        raise BadRequest(f"OLLAMALIKE_{name} must be a size in bytes (like 1073741824, 512MiB or 2GiB; "
                         f"0 turns it off), got {value!r}")
    return int(float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "b").lower()])


def switch(value: str | None, name: str, default: str, third: str) -> str:
    """Ollama's boolean (1/true/yes/on, 0/false/no/off) as "on"/"off", or the setting's ``third`` word;
    unset or empty: ``default``."""
    text = (value or default).strip().lower() or default
    if text in ("1", "true", "yes", "on"):
        return "on"
    if text in ("0", "false", "no", "off"):
        return "off"
    if text != third:
        raise BadRequest(f"OLLAMALIKE_{name} must be on, off or {third} (1/0 and true/false too), got {value!r}")
    return third
