"""The daemon's address and the CLI's API key from the environment: the part of the configuration
the CLI's fast path (cli/fast.py) needs, importable in well under a millisecond.

``config.py`` builds its ``Config`` from these same functions, so both read ``OLLAMALIKE_HOST`` and the
keys one way; this module only exists because ``config.py`` (dataclasses, pathlib, ipaddress) costs more
to import than ``ollamalike list`` may take in all (issue 20). Together the two are the only readers of
``os.environ``. Imports: ``os`` and ``errors`` only.
"""

from __future__ import annotations

import os

from ollamalike.errors import BadRequest

TYPE_CHECKING = False  # not typing's: typing costs the fast path ~2 ms to import
if TYPE_CHECKING:
    from collections.abc import Mapping

DEFAULT_PORT = 11434


def env_value(env: Mapping[str, str], name: str) -> str | None:
    """``OLLAMALIKE_<name>``, else Ollama's ``OLLAMA_<name>`` spelling; empty counts as unset."""
    for key in (f"OLLAMALIKE_{name}", f"OLLAMA_{name}"):
        value = env.get(key)
        if value is not None and value != "":
            return value
    return None


def parse_host(value: str) -> tuple[str, int]:
    """Host and port from OLLAMA_HOST-style values: "0.0.0.0", ":8080", "http://h:1", "[::1]:9"."""
    text = value.strip()
    for scheme in ("http://", "https://"):
        if text.startswith(scheme):
            text = text[len(scheme) :]
    text = text.rstrip("/")
    host, port = text, DEFAULT_PORT
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise BadRequest(f"invalid host: {value!r}")
        host = text[1:end]
        rest = text[end + 1 :]
        if rest.startswith(":"):
            port = _port(rest[1:], value)
    elif text.count(":") == 1:
        host, _, p = text.partition(":")
        port = _port(p, value)
    return (host or "127.0.0.1"), port


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise BadRequest(f"invalid port in host {whole!r}")
    return int(text)


def connect_host(host: str) -> str:
    """The address a client dials for a listen address: the wildcard addresses mean this machine."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    return "::1" if host == "::" else host


def parse_keys(value: str | None) -> tuple[str, ...]:
    """Comma-separated keys, or ``@/path/to/file`` / a path to a file with one key per line."""
    if not value:
        return ()
    text = value.strip()
    path = text[1:] if text.startswith("@") else text
    if text.startswith("@") or ("/" in text and os.path.isfile(path)):
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except OSError as e:
            raise BadRequest(f"cannot read API key file {path}: {e.strerror}") from None
        return tuple(k.strip() for k in lines if k.strip() and not k.strip().startswith("#"))
    return tuple(k.strip() for k in text.split(",") if k.strip())


def cli_target(env: Mapping[str, str] | None = None) -> tuple[str, int, str | None]:
    """(host to dial, port, key to send) for the CLI: the admin key when set (it is accepted everywhere,
    so a CLI holding it can also create, pull and delete), else the first API key, else None."""
    env = os.environ if env is None else env
    host, port = parse_host(env_value(env, "HOST") or "127.0.0.1")
    admin, user = parse_keys(env.get("OLLAMALIKE_ADMIN_KEY")), parse_keys(env.get("OLLAMALIKE_API_KEY"))
    keys = admin or user
    return connect_host(host), port, keys[0] if keys else None
