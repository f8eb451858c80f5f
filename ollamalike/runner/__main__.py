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

from aiohttp import web


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ollamalike.runner", description=__doc__)
    p.add_argument("--info", action="store_true", help="print the llama.cpp backend as JSON and exit")
    p.add_argument("--model")
    p.add_argument("--socket")
    p.add_argument("--ctx", type=int, default=2048, help="total context (per-slot context x parallel)")
    p.add_argument("--parallel", type=int, default=1)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--gpu-layers", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--flash-attn", action="store_true")
    p.add_argument("--no-mmap", action="store_true")
    p.add_argument("--embedding", action="store_true")
    p.add_argument("--adapter", action="append", default=[])
    p.add_argument("--kv-cache-type", default="f16", choices=["f16", "q8_0", "q4_0"])
    p.add_argument("--main-gpu", type=int, default=0)
    p.add_argument("--tensor-split", type=_shares, default=(), help="comma-separated share of layers per GPU")
    p.add_argument("--verbose", action="store_true", help="echo all of llama.cpp's log to stderr")
    args = p.parse_args(argv)
    if not args.info and (not args.model or not args.socket):
        p.error("--model and --socket are required")
    for name in ("ctx", "parallel", "batch"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    if args.batch < args.parallel:
        # llama.cpp asserts (and aborts) when a batch cannot hold one token of every sequence.
        p.error(f"--batch ({args.batch}) must be at least --parallel ({args.parallel})")
    if args.main_gpu < 0:
        p.error("--main-gpu must not be negative")
    return args


def _shares(text: str) -> tuple[float, ...]:
    """``0.6,0.4``: non-negative finite numbers, not all zero, at most 16 of them."""
    try:
        shares = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if len(shares) > 16 or not all(0 <= x < float("inf") for x in shares) or not any(shares):
        raise argparse.ArgumentTypeError(f"shares must be 1-16 non-negative numbers, not all zero: {text!r}")
    return shares


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


async def _serve(args: argparse.Namespace) -> int:
    from ollamalike.runner.llama import LoadOptions
    from ollamalike.runner.server import RunnerServer

    opts = LoadOptions(
        model_path=args.model, ctx_size=args.ctx, parallel=args.parallel, batch=args.batch,
        gpu_layers=args.gpu_layers, threads=args.threads, flash_attn=args.flash_attn,
        use_mmap=not args.no_mmap, embedding=args.embedding, adapters=list(args.adapter),
        kv_cache_type=args.kv_cache_type, verbose=args.verbose, main_gpu=args.main_gpu,
        tensor_split=args.tensor_split,
    )
    server = RunnerServer(opts)
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
    return asyncio.run(_serve(args))


if __name__ == "__main__":
    sys.exit(main())
