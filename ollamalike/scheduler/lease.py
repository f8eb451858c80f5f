"""A loaded model's entry in the scheduler (``LoadedEntry``) and the ``Lease`` a request holds on its runner."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from ollamalike.remote.engine import Engine
from ollamalike.runner.like import RunnerLike
from ollamalike.runner.spec import RunnerSpec
from ollamalike.scheduler.plan import LoadPlan

if TYPE_CHECKING:
    from ollamalike.library.models import ResolvedModel


class _Releaser(Protocol):
    """What a lease gives its slot back to (the Scheduler)."""

    def _release(self, entry: LoadedEntry, embedding: bool = False) -> None: ...


@dataclass
class LoadedEntry:
    key: str
    model: ResolvedModel
    plan: LoadPlan  # as laid out at load time (GPU layers, memory)
    ready: asyncio.Future[None]
    requested: RunnerSpec | Engine  # the request plan's spec: what sharing compares
    runner: RunnerLike | None = None
    active: int = 0  # leases out, embedding ones included
    embeds: int = 0  # of which embedding leases
    keep_alive: float = 300.0
    expires_at: float | None = None  # wall-clock seconds; None while forever
    last_used: float = field(default_factory=time.monotonic)
    draining: bool = False  # no new leases: it is being replaced or unloaded
    timer: asyncio.TimerHandle | None = None
    load_duration_ns: int = 0
    load_waiters: int = 0

    @property
    def remote(self) -> bool:
        """Served by a remote engine: no memory of ours, no keep_alive, not counted as a loaded model."""
        return isinstance(self.requested, Engine)

    @property
    def loaded(self) -> bool:
        return self.ready.done() and self.ready.exception() is None and self.runner is not None

    @property
    def alive(self) -> bool:
        return self.loaded and self.runner is not None and self.runner.alive


class Lease:
    """A slot on a loaded runner. Release it exactly once (``release`` is idempotent)."""

    def __init__(self, scheduler: _Releaser, entry: LoadedEntry, load_duration_ns: int, embedding: bool = False) -> None:
        self._scheduler = scheduler
        self._entry = entry
        self.embedding = embedding
        # A lease is only made on a loaded entry: its runner is set.
        assert entry.runner is not None
        self.runner: RunnerLike = entry.runner
        self.model: ResolvedModel = entry.model
        self.num_ctx: int = entry.plan.num_ctx
        self.load_duration_ns = load_duration_ns
        self.released = False

    @property
    def entry(self) -> LoadedEntry:
        """The loaded model this lease is on (the scheduler's record)."""
        return self._entry

    def release(self) -> None:
        if not self.released:
            self.released = True
            self._scheduler._release(self._entry, self.embedding)

    async def __aenter__(self) -> Lease:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()
