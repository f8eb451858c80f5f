"""The ``ollamalike`` command line: ``main``, the console script's entry point.

Plain ``list``/``ls``, ``ps`` and ``show`` are answered by cli/fast.py, which imports neither click nor
http.client (issue 20: they start in tens of milliseconds); everything else, and whatever the fast path
declines, goes to the click app in cli/app.py. This module imports nothing itself: it is what the
console script imports first. ``ollamalike.cli.cli`` (the click group) still works, loaded on first use.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # not typing's: typing costs the fast path ~2 ms to import
if TYPE_CHECKING:
    import click


def main(argv: list[str] | None = None) -> None:
    from ollamalike.cli.fast import run

    status = run(sys.argv[1:] if argv is None else list(argv))
    if status is not None:
        sys.exit(status)
    from ollamalike.cli.app import main as click_main

    click_main(argv)


def __getattr__(name: str) -> click.Group:
    if name == "cli":
        from ollamalike.cli.app import cli

        return cli
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
