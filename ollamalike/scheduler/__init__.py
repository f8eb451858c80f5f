"""Which runners are loaded: loading on first use, sharing, queueing, keep_alive timers, eviction.

One ``Scheduler`` lives in the daemon. ``acquire`` hands out a ``Lease`` on a model's runner,
starting the runner on first use (concurrent first requests share ONE load), sharing it among up
to ``num_parallel`` requests and queueing the rest up to ``max_queue`` (beyond that: 503). When
the last lease on a model is released, its keep_alive timer starts; 0 unloads at once, a negative
value keeps it forever. Embeddings are served by the model's runner as it is loaded (a chat
model's runner embeds beside its generations), so an embed lease neither reloads it nor takes a
generation slot: embeds have ``num_parallel`` slots of their own. A model whose options need a
different runner (context size, GPU layers …) is reloaded once its in-flight requests finish; a runner that died is noticed
and reloaded by the next request. A model served by a remote engine (Modelfile ENGINE) is leased the
same way (its ``num_parallel`` bounds the requests in flight to it), but takes no memory, does not
count against max_loaded_models and ignores keep_alive: its runner is ``remote.client.RemoteRunner``.
Loading makes room by evicting the least recently used idle model when the model count or the
memory estimate requires.

Every state change happens under one ``asyncio.Condition`` and wakes every waiter, which then
re-checks: simple, and the number of waiters is bounded by ``max_queue``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING

from ollamalike.config import Config
from ollamalike.errors import OllamalikeError, Overloaded, RunnerError
from ollamalike.hardware.planner import InsufficientMemory
from ollamalike.options import Options
from ollamalike.remote.engine import Engine
from ollamalike.runner.like import RunnerLike
from ollamalike.runner.spec import RunnerSpec
from ollamalike.scheduler.lease import Lease, LoadedEntry
from ollamalike.scheduler.plan import LoadPlan, layout_load, plan_load, remote_plan
from ollamalike.scheduler.report import (
    ModelLoad,
    ModelState,
    PsEntry,
    SchedulerSnapshot,
    model_load,
    ps_entry,
)
from ollamalike.scheduler.starters import (
    StartRemote,
    StartRunner,
    free_memory,
    start_real_runner,
    start_remote_runner,
)

if TYPE_CHECKING:
    from ollamalike.library.models import ResolvedModel

__all__ = ["EVICTION_WAIT_SECONDS", "Layout", "Lease", "LoadedEntry", "Planner", "Scheduler", "StartRunner", "model_key"]

log = logging.getLogger("ollamalike.scheduler")

Planner = Callable[["ResolvedModel", Options, Config], LoadPlan]
Layout = Callable[[LoadPlan, "ResolvedModel", Config], LoadPlan]
# How long an eviction made for room may take before the load goes ahead anyway.
EVICTION_WAIT_SECONDS = 30.0

def model_key(model: ResolvedModel | str) -> str:
    """The name a loaded model is known by: its display name (or that name itself), case-insensitive."""
    return (model if isinstance(model, str) else model.name).lower()


class Scheduler:
    def __init__(
        self,
        config: Config,
        start_runner: StartRunner | None = None,
        planner: Planner = plan_load,
        free_memory: Callable[[], int | None] = free_memory,
        layout: Layout = layout_load,
        start_remote: StartRemote | None = None,
    ) -> None:
        self.config = config
        self._start_runner = start_runner or start_real_runner
        self._start_remote = start_remote or start_remote_runner
        self._planner = planner
        self.free_memory = free_memory
        self._layout = layout
        self._models: dict[str, LoadedEntry] = {}
        self._cond = asyncio.Condition()
        self._waiting = 0
        self._waiting_by_key: dict[str, int] = {}  # the same waiters per model key (health's queue depth)
        self._stopping: set[asyncio.Task[None]] = set()  # background work: loads, releases, stops
        self._closed = False

    # -- acquiring -------------------------------------------------------------------------
    async def acquire(
        self, model: ResolvedModel, options: Options, keep_alive: float | None, embedding: bool = False
    ) -> Lease:
        """A lease on ``model``'s runner, loading it if needed. Full queue -> ``Overloaded``.

        ``embedding``: the lease is for embeddings. The runner is the one generations use (no reload
        for a chat model), and the lease counts against the embedding slots, not the generation ones.
        """
        if model.engine is not None:
            plan = remote_plan(model.engine)
            keep_alive = -1.0  # keep_alive does nothing for a remote engine: there is nothing to unload
        else:
            # Off the event loop: the planner reads hardware facts and walks the model's layers.
            plan = await asyncio.to_thread(self._planner, model, options, self.config)
        key = model_key(model)
        keep = self.config.keep_alive if keep_alive is None else keep_alive
        async with self._cond:
            while True:
                if self._closed:
                    raise RunnerError("the server is shutting down")
                entry = self._models.get(key)
                if entry is not None and entry.ready.done() and not entry.draining:
                    if not entry.alive:
                        log.warning("runner for %s exited unexpectedly; reloading", key)
                        self._unload_locked(entry)
                        continue
                    if entry.requested != plan.spec:
                        log.info("reloading %s: the request needs different runner options", key)
                        entry.draining = True
                        if entry.active == 0:
                            self._unload_locked(entry)
                        continue
                if entry is None:
                    if not isinstance(plan.spec, Engine) and not self._make_room_locked(plan):
                        await self._wait_locked(key)
                        continue
                    entry = self._start_load_locked(key, model, plan)
                if not entry.ready.done():
                    await self._wait_for_load(entry)
                    continue
                if entry.draining:
                    await self._wait_locked(key)
                    continue
                busy = entry.embeds if embedding else entry.active - entry.embeds
                if busy < self._slots(entry):
                    return self._lease_locked(entry, keep, embedding)
                await self._wait_locked(key)

    def _slots(self, entry: LoadedEntry) -> int:
        """Requests one model takes at once: the daemon's num_parallel, or its remote engine's own."""
        spec = entry.plan.spec
        return (spec.num_parallel or self.config.num_parallel) if isinstance(spec, Engine) else self.config.num_parallel

    async def _wait_locked(self, key: str) -> None:
        if self._waiting >= self.config.max_queue:
            raise Overloaded("server busy, please try again.  maximum pending requests exceeded")
        self._count_waiter(key, 1)
        try:
            await self._cond.wait()
        finally:
            self._count_waiter(key, -1)

    def _count_waiter(self, key: str, delta: int) -> None:
        self._waiting += delta
        left = self._waiting_by_key.get(key, 0) + delta
        if left > 0:
            self._waiting_by_key[key] = left
        else:
            self._waiting_by_key.pop(key, None)

    async def _wait_for_load(self, entry: LoadedEntry) -> None:
        """Wait for a load started by anyone; its failure is this request's too. The first
        ``num_parallel`` waiters will get a slot once it is loaded; only the others count as queued."""
        queued = entry.load_waiters >= self._slots(entry)
        if queued and self._waiting >= self.config.max_queue:
            raise Overloaded("server busy, please try again.  maximum pending requests exceeded")
        entry.load_waiters += 1
        if queued:
            self._count_waiter(entry.key, 1)
        self._cond.release()
        try:
            await asyncio.shield(entry.ready)
        finally:
            entry.load_waiters -= 1
            if queued:
                self._count_waiter(entry.key, -1)
            await self._cond.acquire()

    def _lease_locked(self, entry: LoadedEntry, keep_alive: float, embedding: bool = False) -> Lease:
        if entry.timer is not None:
            entry.timer.cancel()
            entry.timer = None
        entry.active += 1
        entry.embeds += int(embedding)
        entry.keep_alive = keep_alive
        entry.expires_at = None if keep_alive < 0 else time.time() + max(keep_alive, 0.0)
        entry.last_used = time.monotonic()
        # The first lease after a load reports the load time; later ones loaded nothing.
        load_ns, entry.load_duration_ns = entry.load_duration_ns, 0
        return Lease(self, entry, load_ns, embedding)

    def _start_load_locked(self, key: str, model: ResolvedModel, plan: LoadPlan) -> LoadedEntry:
        loop = asyncio.get_running_loop()
        entry = LoadedEntry(key=key, model=model, plan=plan, ready=loop.create_future(), requested=plan.spec)
        self._models[key] = entry
        # A task of its own: the requester may disconnect, the others waiting still need the model.
        self._spawn(self._load(entry))
        return entry

    async def _load(self, entry: LoadedEntry) -> None:
        started = time.perf_counter_ns()
        try:
            if isinstance(entry.plan.spec, Engine):
                runner = await self._start_remote(entry.plan.spec, self.config)
            else:
                entry.plan = await self._fit(entry)
                spec = entry.plan.spec
                assert isinstance(spec, RunnerSpec)  # layout keeps a local spec local
                runner = await self._start_runner(spec, self.config)
        except BaseException as e:
            async with self._cond:
                if self._models.get(entry.key) is entry:
                    del self._models[entry.key]
                err = e if isinstance(e, OllamalikeError) else RunnerError(f"failed to load model: {e}")
                if isinstance(e, asyncio.CancelledError):
                    err = RunnerError("model load was cancelled")
                entry.ready.set_exception(err)
                entry.ready.exception()  # retrieved: no "never retrieved" warning if nobody waits
                self._cond.notify_all()
            if isinstance(e, asyncio.CancelledError):
                raise
            return
        async with self._cond:
            entry.runner = runner
            entry.load_duration_ns = time.perf_counter_ns() - started
            entry.last_used = time.monotonic()
            entry.ready.set_result(None)
            if self._closed:
                self._unload_locked(entry)
            else:
                self._after_idle_locked(entry)
            self._cond.notify_all()

    async def _fit(self, entry: LoadedEntry) -> LoadPlan:
        """Lay the model out against the memory free now; when it does not fit, evict idle models
        (least recently used first), wait for their runners to exit, and try again."""
        while True:
            try:
                return await asyncio.to_thread(self._layout, entry.plan, entry.model, self.config)
            except InsufficientMemory:
                async with self._cond:
                    # A remote engine's entry holds none of this machine's memory: evicting it frees nothing.
                    victim = self._lru_idle([e for e in self._models.values() if e is not entry and not e.remote])
                    if victim is None:
                        raise
                    log.info("evicting %s to make room for %s", victim.key, entry.key)
                    runner = victim.runner
                    self._unload_locked(victim)
                    self._cond.notify_all()
                loop = asyncio.get_running_loop()
                deadline = loop.time() + EVICTION_WAIT_SECONDS
                while runner is not None and runner.alive and loop.time() < deadline:
                    await asyncio.sleep(0.05)

    def _make_room_locked(self, plan: LoadPlan) -> bool:
        """Evict LRU idle models until the new one fits; False if busy models are in the way. Remote
        engines hold none of this machine's memory and are no loaded model here."""
        others = [e for e in self._models.values() if not e.remote]
        while len(others) >= self.config.max_loaded_models:
            victim = self._lru_idle(others)
            if victim is None:
                return False
            self._unload_locked(victim)
            others.remove(victim)
        free = self.free_memory()
        if free is not None:
            # Memory held by idle models counts as free: they are ours to evict.
            while others and plan.size > free:
                victim = self._lru_idle(others)
                if victim is None:
                    busy = any(e.active or not e.ready.done() for e in others)
                    return not busy
                log.info("evicting %s to make room for a %d byte model", victim.key, plan.size)
                free += victim.plan.size
                self._unload_locked(victim)
                others.remove(victim)
        return True

    @staticmethod
    def _lru_idle(entries: list[LoadedEntry]) -> LoadedEntry | None:
        idle = [e for e in entries if e.ready.done() and e.active == 0]
        return min(idle, key=lambda e: e.last_used) if idle else None

    # -- releasing and unloading ---------------------------------------------------------
    def _release(self, entry: LoadedEntry, embedding: bool = False) -> None:
        entry.active -= 1
        entry.embeds -= int(embedding)
        entry.last_used = time.monotonic()
        self._spawn(self._release_async(entry))

    async def _release_async(self, entry: LoadedEntry) -> None:
        async with self._cond:
            if entry.active == 0:
                self._after_idle_locked(entry)
            self._cond.notify_all()

    def _after_idle_locked(self, entry: LoadedEntry) -> None:
        if entry.active > 0 or self._models.get(entry.key) is not entry:
            return
        if entry.draining or entry.keep_alive == 0 or not entry.alive:
            self._unload_locked(entry)
            return
        if entry.keep_alive < 0:
            entry.expires_at = None
            return
        entry.expires_at = time.time() + entry.keep_alive
        loop = asyncio.get_running_loop()
        entry.timer = loop.call_later(entry.keep_alive, lambda: self._spawn(self._expire(entry)))

    async def _expire(self, entry: LoadedEntry) -> None:
        async with self._cond:
            if entry.active == 0 and self._models.get(entry.key) is entry:
                log.info("keep_alive expired for %s; unloading", entry.key)
                self._unload_locked(entry)
                self._cond.notify_all()

    def _unload_locked(self, entry: LoadedEntry) -> None:
        """Forget the entry now and stop its runner in the background (always reaped)."""
        if self._models.get(entry.key) is entry:
            del self._models[entry.key]
        if entry.timer is not None:
            entry.timer.cancel()
            entry.timer = None
        entry.draining = True
        runner = entry.runner
        if runner is not None:
            self._spawn(self._stop_runner(entry.key, runner))

    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        """Run ``coro`` as a task we hold on to (the loop keeps only weak references to tasks)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    @staticmethod
    async def _stop_runner(key: str, runner: RunnerLike) -> None:
        try:
            await runner.stop()
        except Exception:
            log.exception("stopping the runner for %s failed", key)

    async def evict(self, lease: Lease) -> None:
        """``lease``'s runner died: give the lease back and forget that runner now (its process is
        reaped in the background), so the next ``acquire`` of the model loads a fresh one."""
        lease.release()
        async with self._cond:
            entry = lease.entry
            if self._models.get(entry.key) is entry:
                log.warning("runner for %s died; evicting it", entry.key)
                self._unload_locked(entry)
            self._cond.notify_all()

    async def unload(self, model: ResolvedModel | str) -> bool:
        """Unload ``model`` (a ResolvedModel or its display name) now, or as soon as its requests finish."""
        key = model_key(model)
        async with self._cond:
            entry = self._models.get(key)
            if entry is None:
                return False
            entry.keep_alive = 0
            if entry.ready.done() and entry.active == 0:
                self._unload_locked(entry)
            else:
                entry.draining = True
            self._cond.notify_all()
        return True

    def is_loaded(self, model: ResolvedModel | str) -> bool:
        entry = self._models.get(model_key(model))
        return entry is not None and entry.alive

    async def wait_stopped(self) -> None:
        """Wait until every runner stop started so far has finished (tests, shutdown)."""
        while self._stopping:
            await asyncio.gather(*list(self._stopping), return_exceptions=True)

    async def shutdown(self) -> None:
        async with self._cond:
            self._closed = True
            for entry in list(self._models.values()):
                if entry.ready.done():
                    self._unload_locked(entry)
            self._cond.notify_all()
        await self.wait_stopped()

    # -- reporting -------------------------------------------------------------------------
    @property
    def queued(self) -> int:
        """Requests waiting for a slot or a load (what ``max_queue`` bounds); read by /metrics."""
        return self._waiting

    def snapshot(self) -> SchedulerSnapshot:
        """Load per model and the queue, read without the lock (never waits): /api/health's numbers."""
        entries = sorted(self._models.values(), key=lambda e: e.last_used, reverse=True)
        models: list[ModelLoad] = []
        for entry in entries:
            if entry.ready.done() and not entry.alive:
                continue
            state: ModelState = "draining" if entry.draining else "ready" if entry.ready.done() else "loading"
            models.append(model_load(entry.model, state, entry.active, self._slots(entry),
                                     self._waiting_by_key.get(entry.key, 0)))
        return SchedulerSnapshot(models=tuple(models), queued=self._waiting, max_queue=self.config.max_queue,
                                 num_parallel=self.config.num_parallel, closed=self._closed)

    def ps(self) -> list[PsEntry]:
        """/api/ps entries, most recently used first; dead runners are not listed."""
        out = []
        entries = sorted(self._models.values(), key=lambda e: e.last_used, reverse=True)
        for entry in entries:
            if not entry.alive:
                continue
            assert entry.runner is not None  # alive: loaded
            out.append(ps_entry(entry.model, entry.runner, entry.plan, entry.keep_alive, entry.expires_at))
        return out

