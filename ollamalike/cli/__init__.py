"""The ``ollamalike`` command line: ``console`` (the console script's entry point) and ``main``.

Plain ``list``/``ls``, ``ps`` and ``show`` are answered by cli/fast.py, which imports neither click nor
http.client (issue 20: they start in tens of milliseconds); everything else, and whatever the fast path
declines, goes to the click app in cli/app.py. This module imports nothing itself: it is what the
console script imports first. ``ollamalike.cli.cli`` (the click group) still works, loaded on first use.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not typing's: typing costs the fast path ~2 ms to import
if TYPE_CHECKING:
    import click


def main(argv: list[str] | None = None) -> None:
    """Run the command line on ``argv`` (default: ``sys.argv[1:]``) and exit with its status."""
    from ollamalike.cli.fast import run

    status = run(sys.argv[1:] if argv is None else list(argv))
    if status is not None:
        sys.exit(status)
    from ollamalike.cli.app import main as click_main

    click_main(argv)


def console() -> None:
    """``main`` for the console script's own process: a fast-path answer exits without the interpreter's
    teardown (freeing every module and object: ~3 ms of CPU, twice that of wall time on a loaded
    machine), since that process has nothing left to clean up but its output, flushed here."""
    from ollamalike.cli.fast import run

    status = run(sys.argv[1:])
    if status is not None:
        try:
            for stream in (sys.stdout, sys.stderr):
                if stream is not None:
                    stream.flush()
        except OSError:  # a closed pipe: report it as an ordinary exit would
            sys.exit(status)
        os._exit(status)
    from ollamalike.cli.app import main as click_main

    click_main(None)


def __getattr__(name: str) -> click.Group:
    if name == "cli":
        from ollamalike.cli.app import cli

        return cli
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
