"""``ollamalike serve``: run the daemon in the foreground until SIGINT/SIGTERM.

The only CLI command that imports aiohttp (lazily, inside the command). The address is bound
before the startup line is logged, so a busy port is one clear error. On SIGTERM/SIGINT the daemon
drains first (``server/health.py``: new requests get 503, those in flight get
``OLLAMALIKE_DRAIN_TIMEOUT`` to finish; a second signal cuts the wait short), then runs the app's
cleanup, which stops every runner process before the daemon exits with status 0.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

import click

from ollamalike import __version__
from ollamalike.config import Config, load_config
from ollamalike.errors import BadRequest, InternalError

log = logging.getLogger("ollamalike.server")

# Open connections (a streaming generate) get this long to finish once a shutdown signal arrives.
SHUTDOWN_GRACE_SECONDS = 5.0


@click.command()
@click.option("--insecure-no-auth", is_flag=True,
              help="Allow listening on a non-loopback address without OLLAMALIKE_API_KEY.")
def serve(insecure_no_auth: bool) -> None:
    """Start the ollamalike daemon (OLLAMALIKE_HOST picks the address)."""
    config = load_config()
    check_bind(config, insecure_no_auth)
    logging.basicConfig(
        level=logging.DEBUG if config.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # aiohttp's per-request access log is noise at INFO; keep it for debugging only.
    logging.getLogger("aiohttp.access").setLevel(logging.DEBUG if config.debug else logging.WARNING)
    asyncio.run(_serve(config))
    log.info("ollamalike stopped")


def check_bind(config: Config, insecure_no_auth: bool) -> None:
    """Refuse to expose the API beyond this machine without a key, unless told to."""
    from ollamalike.config import is_loopback_host

    if is_loopback_host(config.host) or config.api_keys or insecure_no_auth or config.insecure_no_auth:
        return
    raise BadRequest(f"refusing to listen on {config.host or '0.0.0.0'} (not loopback) without an API key: "
                     "set OLLAMALIKE_API_KEY, or pass --insecure-no-auth")


async def _log_hardware(config: Config) -> None:
    """One line per device found, the llama.cpp backend, and a build/hardware mismatch if any."""
    from ollamalike import hardware

    try:
        await asyncio.to_thread(hardware.log_startup, config)
    except Exception:
        log.exception("hardware discovery failed; models will be planned for the CPU")


async def _serve(config: Config) -> None:
    from aiohttp import web

    from ollamalike.server import health
    from ollamalike.server.app import make_app

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    # handler_cancellation: a client that goes away cancels its handler, so a queued or
    # non-streamed generation stops and frees its runner slot instead of running on for nobody.
    app = make_app(config)
    runner = web.AppRunner(app, access_log=logging.getLogger("aiohttp.access"),
                           shutdown_timeout=SHUTDOWN_GRACE_SECONDS, handler_cancellation=True)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host or None, config.port, shutdown_timeout=SHUTDOWN_GRACE_SECONDS)
        try:
            await site.start()
        except OSError as e:
            reason = os.strerror(e.errno).lower() if e.errno else str(e)
            raise InternalError(f"listen tcp {config.host}:{config.port}: bind: {reason}") from None
        log.info("ollamalike %s listening on %s:%d (models: %s)", __version__, config.host, config.port, config.models_dir)
        log.info(
            "config: keep_alive=%ss num_parallel=%d max_loaded_models=%d max_queue=%d context_length=%s auth=%s",
            config.keep_alive,
            config.num_parallel,
            config.max_loaded_models,
            config.max_queue,
            config.context_length or "auto",
            "on" if config.api_keys else "off",
        )
        await _log_hardware(config)
        await stop.wait()
        stop.clear()
        await health.drain(app, config.drain_timeout, abort=stop)
        log.info("shutting down: stopping runners")
    finally:
        await runner.cleanup()
