"""``AppState``: what every request handler shares (config, store, scheduler, the inference service,
the registry transfer limit and counters), and its lifecycle.

The state is built when the app starts and torn down on cleanup, so that stopping the daemon
stops every runner process.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ollamalike.config import Config
from ollamalike.errors import InternalError
from ollamalike.inference import InferenceService
from ollamalike.scheduler import Scheduler
from ollamalike.server.responses_store import ResponseStore
from ollamalike.store import Store

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger("ollamalike.server")

STATE_KEY = "state"


@dataclass
class AppState:
    config: Config
    store: Store
    scheduler: Scheduler
    inference: InferenceService
    # Pulls and pushes running at once (OLLAMALIKE_MAX_CONCURRENT_PULLS): server/native_registry.py.
    registry_transfers: asyncio.Semaphore
    started_at: float = field(default_factory=time.time)
    # {"transferred": bytes}: pull_model adds each blob's downloaded bytes; /metrics reads it.
    pull_stats: dict[str, int] = field(default_factory=lambda: {"transferred": 0})
    # The Responses API's stored conversations (previous_response_id).
    responses: ResponseStore = field(default_factory=ResponseStore)

    @classmethod
    def create(cls, config: Config) -> AppState:
        try:
            config.home.mkdir(parents=True, exist_ok=True)
            store = Store(config.models_dir)
        except OSError as e:
            where = e.filename or config.models_dir
            raise InternalError(f"cannot use models directory {config.models_dir}: {e.strerror} ({where})") from None
        if not config.noprune:
            # As Ollama does at start-up: blobs no model references (an abandoned upload, a model
            # deleted while the daemon was down) are removed. OLLAMALIKE_NOPRUNE=1 keeps them.
            removed = store.gc()
            if removed:
                log.info("pruned %d unused blob(s) from %s", len(removed), config.models_dir)
        else:
            # Temp files of killed writers are never blobs: they go even when unused blobs are kept.
            store.remove_stale_temps()
        scheduler = Scheduler(config)
        return cls(config=config, store=store, scheduler=scheduler,
                   inference=InferenceService(store, scheduler),
                   registry_transfers=asyncio.Semaphore(config.max_concurrent_pulls))

    async def close(self) -> None:
        """Stop every runner, then close the catalog; errors are logged, never raised, so shutdown completes."""
        try:
            await self.scheduler.shutdown()
        except Exception:
            log.exception("scheduler shutdown failed")
        try:
            self.store.close()
        except Exception:
            log.exception("store close failed")


def get_state(request: web.Request) -> AppState:
    """The state of the app serving ``request`` (route modules use this, never ``app`` internals)."""
    state: AppState = request.app[STATE_KEY]
    return state
