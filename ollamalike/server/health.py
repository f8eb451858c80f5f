"""Being a good fleet member: ``GET /api/health`` (readiness and load), ``GET /api/health/live``
(liveness), and the graceful drain that ``ollamalike serve`` runs on SIGTERM.

- ``/api/health/live`` answers 200 while the event loop runs. It reads nothing (no store, no
  scheduler, no runner), so a liveness probe can never hang on them, and it stays 200 while draining:
  a pod being drained must not be restarted by its liveness probe.
- ``/api/health`` answers 200 when the daemon takes new work and 503 while it drains, with the load
  a router needs: busy and free slots and queue depth per loaded model, from ``Scheduler.snapshot()``.
- Both are open when API keys are on (Kubernetes probes cannot easily send a key); without a valid
  key ``/api/health`` gives only counts, never model names. With a key it lists the models.
- The drain (``drain(app, timeout)``): every request other than GET/HEAD/OPTIONS is refused with
  503 and ``Retry-After`` in its API's error shape; the requests in flight get ``timeout`` seconds
  to finish; those still running are then cut (a stream ends with its framing's error frame, a
  non-streamed request gets the 503). ``serve`` then stops the runners and exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from ollamalike import __version__
from ollamalike.config import Config
from ollamalike.errors import Overloaded
from ollamalike.server import security
from ollamalike.server.http import json_response
from ollamalike.server.middleware import error_response
from ollamalike.server.streaming import CUT_KEY

log = logging.getLogger("ollamalike.server")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

DRAIN_KEY = "drain"
HEALTH_PATH = "/api/health"
LIVE_PATH = "/api/health/live"
HEALTH_PATHS = frozenset({HEALTH_PATH, LIVE_PATH})
# Methods that start no work: still answered while draining (tags, ps, metrics, version).
_READ_ONLY = frozenset({"GET", "HEAD", "OPTIONS"})
RETRY_AFTER_MAX = 5
# After the cut, how long the cut handlers get to write their error frame and return.
CUT_GRACE_SECONDS = 5.0


class Draining(Overloaded):
    """503: the daemon is shutting down; the client should retry (elsewhere, or after Retry-After)."""


@dataclass(frozen=True)
class DrainResult:
    finished: int  # requests that completed within the timeout
    cut: int  # requests still running at the timeout, cut


class Drain:
    """The requests in flight (their handler tasks) and whether the daemon is draining."""

    def __init__(self) -> None:
        self.draining = False
        self.timeout = 0.0
        self._deadline = 0.0  # time.monotonic() when the drain cuts what is left
        self._tasks: dict[asyncio.Task[object], web.Request] = {}

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def retry_after(self) -> int:
        """Whole seconds, 1 to ``RETRY_AFTER_MAX``: a retry through a load balancer soon reaches
        another replica, and clients that honour the header (LiteLLM, the OpenAI SDK) must not
        stall for the whole drain."""
        return max(1, min(RETRY_AFTER_MAX, math.ceil(self._deadline - time.monotonic())))

    def track(self, request: web.Request) -> asyncio.Task[object] | None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks[task] = request
        return task

    def untrack(self, task: asyncio.Task[object] | None) -> None:
        if task is not None:
            self._tasks.pop(task, None)

    async def run(self, timeout: float, abort: asyncio.Event | None = None) -> DrainResult:
        """Refuse new work, wait up to ``timeout`` s for the requests in flight (``abort`` set ends the
        wait early), then cut the rest and give them ``CUT_GRACE_SECONDS`` to answer."""
        self.draining, self.timeout = True, timeout
        self._deadline = time.monotonic() + timeout
        started = self.in_flight
        log.info("draining: %d request(s) in flight; new requests get 503 (waiting up to %gs, OLLAMALIKE_DRAIN_TIMEOUT)",
                 started, timeout)
        aborted = asyncio.ensure_future(abort.wait()) if abort is not None else None
        try:
            # New GET requests may still arrive and be tracked: loop until none is left.
            while self._tasks and (left := self._deadline - time.monotonic()) > 0:
                # The handlers' tasks and the abort signal's: futures of different results (Future is invariant).
                waiters: set[asyncio.Future[Any]] = set(self._tasks)
                if aborted is not None:
                    waiters.add(aborted)
                await asyncio.wait(waiters, timeout=left, return_when=asyncio.FIRST_COMPLETED)
                if aborted is not None and aborted.done():
                    log.warning("second shutdown signal: cutting the drain short")
                    break
        finally:
            if aborted is not None:
                aborted.cancel()
        remaining = dict(self._tasks)
        if remaining:
            error = Draining(f"server shutting down: the request was still running when the drain timeout "
                             f"({timeout:g}s, OLLAMALIKE_DRAIN_TIMEOUT) passed")
            log.warning("drain timeout: cutting %d request(s) still running", len(remaining))
            for task, request in remaining.items():
                request[CUT_KEY] = error
                task.cancel()
            await asyncio.wait(set(remaining), timeout=CUT_GRACE_SECONDS)
        finished = max(0, started - len(remaining))
        log.info("drained: %d request(s) finished, %d cut", finished, len(remaining))
        return DrainResult(finished=finished, cut=len(remaining))


def get_drain(app: web.Application) -> Drain:
    drain: Drain = app[DRAIN_KEY]
    return drain


async def drain(app: web.Application, timeout: float, abort: asyncio.Event | None = None) -> DrainResult:
    """What ``serve`` calls on SIGTERM, before the app's cleanup stops the runners."""
    return await get_drain(app).run(timeout, abort)


@web.middleware
async def drain_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in HEALTH_PATHS:
        return await handler(request)
    state = get_drain(request.app)
    if state.draining and request.method not in _READ_ONLY:
        return error_response(request, 503, "server shutting down: not accepting new requests, "
                              "please retry on another server", openai_type=Draining.openai_type,
                              headers={"Retry-After": str(state.retry_after())})
    task = state.track(request)
    try:
        return await handler(request)
    except asyncio.CancelledError:
        cut = request.get(CUT_KEY)
        if cut is None:
            raise
        # Ours (the drain timeout), not the client's: the client still gets an answer.
        if task is not None and hasattr(task, "uncancel"):
            task.uncancel()
        raise Draining(cut.message) from None
    finally:
        state.untrack(task)


def _has_valid_key(request: web.Request, config: Config) -> bool:
    if not config.api_keys and not config.admin_keys:
        return True
    token = security.bearer_token(request)
    return token is not None and security.key_matches(token, config.api_keys + config.admin_keys)


async def live(request: web.Request) -> web.Response:
    return json_response({"status": "alive"})


async def health(request: web.Request) -> web.Response:
    """Readiness and load. Reads the scheduler's snapshot only (no lock, no store, no runner)."""
    config: Config = request.app["config"]
    draining = get_drain(request.app)
    state = request.app.get("state")
    snap = state.scheduler.snapshot() if state is not None else None
    ready = snap is not None and not snap.closed and not draining.draining
    body: dict[str, object] = {
        "status": "ok" if ready else "draining" if draining.draining else "unavailable",
        "ready": ready,
        "draining": draining.draining,
        "version": __version__,
        "uptime_seconds": round(time.time() - state.started_at, 3) if state is not None else 0.0,
        "in_flight": draining.in_flight,
        "queued": snap.queued if snap else 0,
        "max_queue": config.max_queue,
        "num_parallel": config.num_parallel,
        "loaded_models": len(snap.models) if snap else 0,
        "busy": snap.busy if snap else 0,
        "free": snap.free if snap else 0,
    }
    if snap is not None and _has_valid_key(request, config):
        body["models"] = [{"name": m.name, "state": m.state, "busy": m.busy, "free": m.free, "queued": m.queued}
                          for m in snap.models]
    return json_response(body, status=200 if ready else 503)


def setup(app: web.Application) -> None:
    with warnings.catch_warnings():
        # Plain string keys, like app["state"] (see server.app._set).
        warnings.simplefilter("ignore", web.NotAppKeyWarning)
        app[DRAIN_KEY] = Drain()
    app.router.add_get(HEALTH_PATH, health)
    app.router.add_get(LIVE_PATH, live)


MIDDLEWARES: list[Middleware] = [drain_middleware]
