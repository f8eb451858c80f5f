"""The fast path of ``list``/``ls``, ``ps`` and ``show``: answered without click, http.client or config.py.

Those commands are one request and a table, so their cost is the interpreter's start-up plus imports.
Through click, http.client and the dataclass ``Config`` they took 0.14-0.18 s on a quiet 2-core machine
(issue 20; bench/cli.py). ``run`` handles only their plain forms (known flags and the positional arguments,
nothing else) against a daemon that answers 200, importing only ``_json``, ``_socket``, ``math`` and a few
small modules of ours (client_fast, config_cli, views, output, errors). Everything else returns None and goes
to the click app, which does the command from the start: ``--help``, an unknown option, a daemon that must be
started, an error status (the click path reads the error message), a variable config.py would refuse
(config_cli.py reads only the address and the key). The text printed comes from cli/views.py, as the click
commands print it.
"""

from __future__ import annotations

import sys

# Not typing.TYPE_CHECKING: importing typing would cost ~2 ms here (annotations are strings).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ollamalike.client_fast import JSONBody

_SHOW_FLAGS = {
    "--license": "license",
    "--modelfile": "modelfile",
    "--parameters": "parameters",
    "--system": "system",
    "--template": "template",
}


class _Request:
    def __init__(self, command: str, method: str, path: str, body: JSONBody | None = None) -> None:
        self.command, self.method, self.path, self.body = command, method, path, body
        self.prefix: str | None = None
        self.field: str | None = None
        self.verbose = False


def parse(args: list[str]) -> _Request | None:
    """The request a plain ``list [PREFIX]``, ``ps`` or ``show NAME [flags]`` makes; None for anything else."""
    if not args:
        return None
    command, rest = args[0], args[1:]
    options = [a for a in rest if a.startswith("-")]
    positional = [a for a in rest if not a.startswith("-")]
    if command in ("list", "ls") and not options and len(positional) <= 1:
        req = _Request("list", "GET", "/api/tags")
        req.prefix = positional[0] if positional else None
        return req
    if command == "ps" and not rest:
        return _Request("ps", "GET", "/api/ps")
    if command == "show" and len(positional) == 1:
        fields = {_SHOW_FLAGS[o] for o in options if o in _SHOW_FLAGS}
        verbose = any(o in ("-v", "--verbose") for o in options)
        known = all(o in _SHOW_FLAGS or o in ("-v", "--verbose") for o in options)
        if not known or len(fields) > 1:  # several fields: the click command's error
            return None
        req = _Request("show", "POST", "/api/show", {"model": positional[0], "verbose": verbose})
        req.field = fields.pop() if fields else None
        req.verbose = verbose
        return req
    return None


def _render(req: _Request, data: dict[str, Any]) -> str | None:
    from ollamalike.cli import views

    if req.command == "list":
        return views.list_table(data.get("models") or [], req.prefix)
    if req.command == "ps":
        return views.ps_table(data.get("models") or [])
    return views.show_text(data, req.field, req.verbose)


def run(args: list[str]) -> int | None:
    """Answer the command and return its exit status (0), or None: the click app must handle it."""
    req = parse(args)
    if req is None:
        return None
    from ollamalike.client_fast import quick_json
    from ollamalike.config_cli import cli_target
    from ollamalike.errors import OllamalikeError

    try:
        host, port, key = cli_target()
    except OllamalikeError:
        return None  # a bad OLLAMALIKE_HOST or key file: the click path reports it
    data = quick_json(host, port, req.method, req.path, req.body, key)
    if not isinstance(data, dict):
        return None
    try:
        text = _render(req, data)
    except (AttributeError, KeyError, TypeError, ValueError):
        return None  # an answer of an unexpected shape: whatever the click path makes of it
    if text is not None and sys.stdout is not None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    return 0
