"""The error middleware's log levels: a full queue is a warning, a server fault an error."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiohttp import web

from ollamalike.errors import InternalError, Overloaded
from ollamalike.server.middleware import error_middleware
from tests.helpers import assert_api_error


@pytest.mark.parametrize(("exc", "status", "level"), [
    (Overloaded("server busy, please try again"), 503, logging.WARNING),
    (InternalError("runner exploded"), 500, logging.ERROR),
])
async def test_log_level_by_error(aiohttp_client: Any, caplog: pytest.LogCaptureFixture,
                                  exc: Exception, status: int, level: int) -> None:
    async def handler(request: web.Request) -> web.Response:
        raise exc

    app = web.Application(middlewares=[error_middleware])
    app.router.add_get("/api/x", handler)
    client = await aiohttp_client(app)
    with caplog.at_level(logging.INFO, logger="ollamalike"):
        resp = await client.get("/api/x")
        assert_api_error(resp.status, await resp.read(), status, str(exc))
    records = [r for r in caplog.records if str(exc) in r.getMessage()]
    assert records and all(r.levelno == level for r in records)
