"""``AppState``: what every request handler shares (config, store, scheduler), and its lifecycle.

The state is built when the app starts and torn down on cleanup, so that stopping the daemon
stops every runner process. The scheduler module may not exist yet while the project is being
assembled; then the state simply has no scheduler and inference routes are not registered.
"""

from __future__ import annotations

import importlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from ollamalike.config import Config

log = logging.getLogger("ollamalike.server")


@dataclass
class AppState:
    config: Config
    store: Any
    scheduler: Any = None
    started_at: float = field(default_factory=time.time)
    # Free-form slots for route modules (registry pull progress, metrics, …) keyed by module.
    extras: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def create(cls, config: Config) -> AppState:
        config.home.mkdir(parents=True, exist_ok=True)
        store = None
        store_module = _optional_module("ollamalike.store")
        if store_module is not None and hasattr(store_module, "Store"):
            store = store_module.Store(config.models_dir)
        else:
            log.warning("ollamalike.store is not available: model routes will fail")
        scheduler = None
        try:
            module = _optional_module("ollamalike.scheduler")
        except ImportError:
            # A scheduler that cannot be imported must not take model management down with it.
            log.exception("cannot import the scheduler: inference is unavailable")
            module = None
        if module is not None and hasattr(module, "Scheduler"):
            scheduler = module.Scheduler(config)
        return cls(config=config, store=store, scheduler=scheduler)

    async def close(self) -> None:
        """Stop every runner; errors are logged, never raised, so shutdown always completes."""
        if self.scheduler is not None:
            try:
                await self.scheduler.shutdown()
            except Exception:
                log.exception("scheduler shutdown failed")
        close = getattr(self.store, "close", None)
        if callable(close):
            try:
                close()
            except Exception:
                log.exception("store close failed")


def _optional_module(name: str) -> Any:
    """Import ``name``, or None if exactly that module does not exist (yet)."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name == name:
            return None
        raise
