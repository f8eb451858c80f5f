"""``python -m ollamalike.runner``: one model, served over a Unix socket until told to stop.

Exits cleanly on POST /shutdown, SIGTERM/SIGINT, or when its parent goes away (stdin closes, or
the parent-death signal on Linux). ``--info`` prints the compiled llama.cpp backend as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import stat
import sys
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ollamalike.runner.llama import Preload


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ollamalike.runner", description=__doc__)
    p.add_argument("--info", action="store_true", help="print the llama.cpp backend as JSON and exit")
    p.add_argument("--spec", help="the RunnerSpec as JSON (ollamalike/runner/spec.py)")
    p.add_argument("--socket")
    p.add_argument("--verbose", action="store_true", help="echo all of llama.cpp's log to stderr")
    args = p.parse_args(argv)
    if args.info:
        return args
    if not args.spec or not args.socket:
        p.error("--spec and --socket are required")
    from ollamalike.errors import RunnerError
    from ollamalike.runner.spec import RunnerSpec

    try:
        args.spec = RunnerSpec.from_json(args.spec)
    except RunnerError as e:
        p.error(e.message)
    return args


def _die_with_parent() -> None:
    """Linux: get SIGTERM when the parent dies, so a crashed daemon leaves no orphan runners."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
            if os.getppid() == 1:
                os.kill(os.getpid(), signal.SIGTERM)


def _watch_stdin(loop: asyncio.AbstractEventLoop, stopping: asyncio.Event) -> None:
    """When stdin is a pipe from the parent, its EOF means the parent is gone."""
    with contextlib.suppress(OSError):
        if not stat.S_ISFIFO(os.fstat(0).st_mode):
            return

    def watch() -> None:
        with contextlib.suppress(OSError, ValueError):
            while os.read(0, 4096):
                pass
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(stopping.set)

    threading.Thread(target=watch, name="stdin-watch", daemon=True).start()


async def _serve(args: argparse.Namespace, preload: Preload) -> int:
    from aiohttp import web

    from ollamalike.runner.server import RunnerServer

    server = RunnerServer(args.spec, verbose=args.verbose, preload=preload)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.stopping.set)
    _watch_stdin(loop, server.stopping)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(args.socket)
    runner = web.AppRunner(server.app(), handle_signals=False, handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.UnixSite(runner, args.socket)
    await site.start()
    load = asyncio.create_task(server.load())
    try:
        await server.stopping.wait()
    finally:
        load.cancel()
        with contextlib.suppress(BaseException):
            await load
        await runner.cleanup()
        await loop.run_in_executor(None, server.close)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(args.socket)
    return 1 if server.status == "error" else 0


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.info:
        from ollamalike.runner.info import main as info_main

        return info_main()
    _die_with_parent()
    # The weights start loading before the server's imports (aiohttp, the engine: about half a
    # second), which run while llama.cpp reads the file.
    from ollamalike.runner.llama import start_loading

    preload = start_loading(args.spec, args.verbose)
    return asyncio.run(_serve(args, preload))


if __name__ == "__main__":
    sys.exit(main())
