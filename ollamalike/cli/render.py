"""``ollamalike render MODEL [-f FILE]``: print the exact prompt a request body renders to.

The body is JSON from FILE or stdin: ``{"messages": [...], "tools": [...]}`` (chat) or
``{"prompt": ..., "system": ..., "suffix": ...}`` (generate). The daemon renders it
(``POST /api/render``); the text is written byte-exact, with no newline added.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from ollamalike.client import ensure_daemon
from ollamalike.config import load_config
from ollamalike.errors import BadRequest


def _read_body(file: str | None) -> dict[str, Any]:
    try:
        if file is None or file == "-":
            if sys.stdin.isatty():
                raise BadRequest("give the JSON request body with -f FILE or on stdin")
            raw = sys.stdin.buffer.read()
            source = "stdin"
        else:
            with open(file, "rb") as fh:
                raw = fh.read()
            source = file
    except OSError as e:
        raise BadRequest(f"cannot read {file}: {e.strerror}") from None
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise BadRequest(f"{source} is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise BadRequest(f"{source} must hold a JSON object")
    return body


@click.command(help="Print the prompt a chat or generate request renders to for MODEL.")
@click.argument("model")
@click.option("-f", "--file", "file", default=None, help="JSON request body (default: stdin).")
def render(model: str, file: str | None) -> None:
    body = _read_body(file)
    body["model"] = model
    client = ensure_daemon(load_config())
    result = client.json("POST", "/api/render", body)
    prompt = result.get("prompt") if isinstance(result, dict) else None
    if not isinstance(prompt, str):
        raise BadRequest("the server's answer has no prompt")
    out = sys.stdout.buffer
    out.write(prompt.encode("utf-8"))
    out.flush()
