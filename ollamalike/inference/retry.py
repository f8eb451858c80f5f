"""A request's hold on a runner that survives one runner death before the request has answered.

A runner can die between the scheduler handing out a lease and the request using it (a kill -9 or
a crash of an idle runner that the daemon has not reaped yet: the socket refuses, the process is
gone). ``RetryingLease`` wraps the scheduler's ``Lease``; its ``runner`` forwards every call to the
leased runner, and when one fails with ``RunnerDied`` before the runner has streamed anything back
(no completion chunk yet: nothing of the answer can have reached the client), it has the scheduler
evict that runner, takes a lease on a fresh one and repeats the call there, once. A second death,
or a death after the first chunk, is the request's error as before.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

from ollamalike.errors import RunnerDied
from ollamalike.jsontypes import JSONObject
from ollamalike.options import Options
from ollamalike.runner.like import RunnerLike
from ollamalike.scheduler import Lease, Scheduler

if TYPE_CHECKING:
    from ollamalike.library.models import ResolvedModel
    from ollamalike.media import Media

__all__ = ["RetryingLease", "acquire_retrying"]

log = logging.getLogger("ollamalike.inference")

T = TypeVar("T")


async def acquire_retrying(scheduler: Scheduler, model: ResolvedModel, options: Options, keep_alive: float | None,
                           embedding: bool = False) -> RetryingLease:
    """``scheduler.acquire(...)``, as a lease whose runner is retried once on a fresh one if it died."""
    lease = await scheduler.acquire(model, options, keep_alive, embedding=embedding)
    return RetryingLease(scheduler, lease, model, options, keep_alive, embedding)


class RetryingLease:
    """What the inference service holds for one request: ``runner``, ``num_ctx``,
    ``load_duration_ns`` and ``release()`` of the current lease (a fresh one after a retry)."""

    def __init__(self, scheduler: Scheduler, lease: Lease, model: ResolvedModel, options: Options,
                 keep_alive: float | None, embedding: bool) -> None:
        self._scheduler = scheduler
        self._lease = lease
        self._model = model
        self._options = options
        self._keep_alive = keep_alive
        self._embedding = embedding
        self.retried = False
        self.answered = False  # a completion chunk has come back: no retry after that
        self.runner: RunnerLike = _RetryingRunner(self)

    @property
    def lease(self) -> Lease:
        return self._lease

    @property
    def num_ctx(self) -> int:
        return self._lease.num_ctx

    @property
    def load_duration_ns(self) -> int:
        """The load of the runner that answered (the fresh one's after a retry)."""
        return self._lease.load_duration_ns

    def release(self) -> None:
        self._lease.release()

    def may_retry(self) -> bool:
        return not self.retried and not self.answered

    async def renew(self, error: RunnerDied) -> None:
        """Evict the dead runner and lease a fresh one for the same model and options."""
        self.retried = True
        log.warning("runner for %s (pid %d) died before answering (%s); retrying on a fresh runner",
                    self._model.name, self._lease.runner.pid, error.message)
        await self._scheduler.evict(self._lease)
        self._lease = await self._scheduler.acquire(self._model, self._options, self._keep_alive,
                                                    embedding=self._embedding)

    async def call(self, fn: Callable[[RunnerLike], Awaitable[T]]) -> T:
        """``fn(runner)``, repeated once on a fresh runner if this one turns out to be dead."""
        try:
            return await fn(self._lease.runner)
        except RunnerDied as e:
            if not self.may_retry():
                raise
            await self.renew(e)
        return await fn(self._lease.runner)


class _RetryingRunner:
    """The ``RunnerLike`` a ``RetryingLease`` hands out: the current lease's runner, retried once."""

    def __init__(self, holder: RetryingLease) -> None:
        self._holder = holder

    @property
    def pid(self) -> int:
        return self._holder.lease.runner.pid

    @property
    def alive(self) -> bool:
        return self._holder.lease.runner.alive

    @property
    def memory(self) -> dict[str, int]:
        return self._holder.lease.runner.memory

    async def completion(self, prompt: str | list[int], options: Mapping[str, object] | None = None,
                         format: str | JSONObject | None = None, images: Sequence[Media] = (), *,
                         logprobs: int | None = None, shift: bool = True) -> AsyncIterator[JSONObject]:
        holder = self._holder
        while True:
            try:
                chunks = holder.lease.runner.completion(prompt, options, format, images, logprobs=logprobs, shift=shift)
                async with contextlib.aclosing(chunks):  # type: ignore[type-var]  # an async generator in fact
                    async for chunk in chunks:
                        holder.answered = True
                        yield chunk
                return
            except RunnerDied as e:
                if not holder.may_retry():
                    raise
                await holder.renew(e)

    async def tokenize(self, text: str, add_special: bool = True, images: Sequence[Media] = ()) -> list[int]:
        return await self._holder.call(lambda runner: runner.tokenize(text, add_special, images))

    async def detokenize(self, tokens: list[int]) -> str:
        return await self._holder.call(lambda runner: runner.detokenize(tokens))

    async def embed(self, inputs: list[str], truncate: bool = True) -> tuple[list[list[float]], int]:
        return await self._holder.call(lambda runner: runner.embed(inputs, truncate))

    async def stop(self) -> None:
        await self._holder.lease.runner.stop()
