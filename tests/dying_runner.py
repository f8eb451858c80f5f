"""A runner that loads its model as usual, then dies (SIGKILL) on its first inference request.

Started through a wrapper script as ``OLLAMALIKE_RUNNER_PYTHON`` (``write_wrapper``), so the real
daemon runs real runner processes that all die the way a crashing llama.cpp does: after the daemon
got its lease and before any byte of an answer. Anything but ``-m ollamalike.runner`` (the backend
probe, the quantizer) runs the real module unchanged.
"""

from __future__ import annotations

import os
import signal
import stat
import sys
from pathlib import Path

from aiohttp import web


async def _die(*_args: object) -> web.Response:
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable")


def write_wrapper(path: Path) -> Path:
    """An executable that stands in for the runner's python: ``-m ollamalike.runner`` gets a dying runner."""
    path.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "-m" ] && [ "$2" = "ollamalike.runner" ]; then\n'
        "  shift 2\n"
        f'  exec "{sys.executable}" "{Path(__file__).resolve()}" "$@"\n'
        "fi\n"
        f'exec "{sys.executable}" "$@"\n'
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def main() -> int:
    from ollamalike.runner import __main__ as runner_main
    from ollamalike.runner.server import RunnerServer

    for route in ("tokenize", "detokenize", "completion", "embedding"):
        setattr(RunnerServer, route, _die)
    return runner_main.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
