"""``AppState``: what every request handler shares (config, store, scheduler), and its lifecycle.

The state is built when the app starts and torn down on cleanup, so that stopping the daemon
stops every runner process.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from ollamalike.config import Config
from ollamalike.scheduler import Scheduler
from ollamalike.store import Store

log = logging.getLogger("ollamalike.server")


@dataclass
class AppState:
    config: Config
    store: Store
    scheduler: Scheduler
    started_at: float = field(default_factory=time.time)
    # Free-form slots for route modules (registry pull progress, metrics, …) keyed by module.
    extras: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def create(cls, config: Config) -> AppState:
        config.home.mkdir(parents=True, exist_ok=True)
        return cls(config=config, store=Store(config.models_dir), scheduler=Scheduler(config))

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
