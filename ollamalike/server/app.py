"""``make_app(config)``: the daemon's aiohttp application, its middleware chain and route modules.

Route modules each expose ``setup(app)``. Middleware is a list so later layers (auth, CORS,
host checks from ``server/ops.py``) compose with the error middleware, which is listed first
(outermost) so it turns every error, theirs included, into the API's JSON error shape.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import AsyncIterator
from types import ModuleType

from aiohttp import web
from aiohttp.typedefs import Middleware

from ollamalike.config import Config
from ollamalike.server import (
    anthropic,
    health,
    native_infer,
    native_models,
    native_registry,
    native_render,
    openai,
    ops,
    responses,
)
from ollamalike.server.middleware import MIDDLEWARES
from ollamalike.server.state import STATE_KEY, AppState, get_state

log = logging.getLogger("ollamalike.server")

__all__ = ["ROUTE_MODULES", "STATE_KEY", "get_state", "make_app"]

# health is last: its drain middleware then runs innermost, after auth (see server/health.py).
ROUTE_MODULES: tuple[ModuleType, ...] = (
    native_models, native_infer, native_registry, native_render, openai, responses, anthropic, ops, health,
)

def make_app(config: Config, extra_middlewares: list[Middleware] | None = None) -> web.Application:
    modules = ROUTE_MODULES
    # Route modules may contribute middleware (auth, CORS) as a module-level MIDDLEWARES list.
    middlewares: list[Middleware] = list(MIDDLEWARES)
    for module in modules:
        middlewares.extend(getattr(module, "MIDDLEWARES", ()))
    middlewares.extend(extra_middlewares or ())
    # Request bodies are read by server/http.py with its own limit; blob uploads stream.
    app = web.Application(middlewares=middlewares, client_max_size=config.max_body_bytes)
    _set(app, "config", config)
    app.cleanup_ctx.append(_state_ctx)
    for module in modules:
        module.setup(app)
    return app


async def _state_ctx(app: web.Application) -> AsyncIterator[None]:
    state = AppState.create(app["config"])
    _set(app, STATE_KEY, state)
    try:
        yield
    finally:
        await state.close()


def _set(app: web.Application, key: str, value: object) -> None:
    # The contract is ``app["state"]`` (plain string keys, used by every route module);
    # aiohttp's advice to use AppKey objects would only add noise to every test run.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", web.NotAppKeyWarning)
        app[key] = value
