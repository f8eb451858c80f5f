"""``ollamalike serve``: run the daemon in the foreground until SIGINT/SIGTERM.

The only CLI command that imports aiohttp (lazily, inside the command). Shutdown runs the app's
cleanup, which stops every runner process before the daemon exits.
"""

from __future__ import annotations

import logging
import sys

import click

from ollamalike import __version__
from ollamalike.config import load_config
from ollamalike.errors import InternalError


@click.command()
def serve() -> None:
    """Start the ollamalike daemon (OLLAMALIKE_HOST picks the address)."""
    config = load_config()
    logging.basicConfig(
        level=logging.DEBUG if config.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # aiohttp's per-request access log is noise at INFO; keep it for debugging only.
    logging.getLogger("aiohttp.access").setLevel(logging.DEBUG if config.debug else logging.WARNING)
    from aiohttp import web

    from ollamalike.server.app import make_app

    app = make_app(config)
    log = logging.getLogger("ollamalike.server")

    async def _announce(_app: web.Application) -> None:
        log.info(
            "ollamalike %s listening on %s:%d (models: %s)", __version__, config.host, config.port, config.models_dir
        )

    app.on_startup.append(_announce)
    try:
        web.run_app(
            app,
            host=config.host or None,
            port=config.port,
            print=None,
            shutdown_timeout=5.0,
            handle_signals=True,
            access_log=logging.getLogger("aiohttp.access"),
        )
    except OSError as e:
        raise InternalError(f"listen tcp {config.host}:{config.port}: {e.strerror or e}") from None
    log.info("ollamalike stopped")
