"""Events from the engine thread to the runner's event loop: all of one engine step on one wake-up.

Waking an asyncio loop from another thread (``call_soon_threadsafe``) writes to its self-pipe: once
per token per stream that was a measurable share of the engine thread. ``Outbox.sender(queue)``
is a request's ``emit``: it appends to one FIFO shared by every request and wakes the loop only when
no drain is pending yet, and not while the engine holds the outbox: the engine brackets each loop
turn with ``hold``/``release`` (``request.StepGate``), so a step's events for all its slots travel
together, and ``release`` sends what the turn left. One FIFO keeps each request's events in the
order they were emitted. Events emitted outside a turn (or from another thread) go at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque

from ollamalike.runner.request import Emit, Event


class Outbox:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._items: deque[tuple[asyncio.Queue[Event], Event]] = deque()
        self._lock = threading.Lock()
        self._pending = False  # a drain is scheduled on the loop and has not started yet
        self._held = 0
        self.wakeups = 0  # how many times the loop was woken (tests compare it with the events sent)

    def sender(self, events: asyncio.Queue[Event]) -> Emit:
        """An ``emit`` (thread-safe) that delivers into ``events`` on the loop."""

        def emit(event: Event) -> None:
            self._items.append((events, event))
            self._kick()

        return emit

    def hold(self) -> None:
        with self._lock:
            self._held += 1

    def release(self) -> None:
        with self._lock:
            self._held -= 1
        self._kick()

    def _kick(self) -> None:
        with self._lock:
            if self._pending or self._held or not self._items:
                return
            self._pending = True
            self.wakeups += 1
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening any more
            self._loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self._lock:
            # Cleared before taking the items: whatever is appended from now on schedules its own drain.
            self._pending = False
        items = self._items
        while items:
            events, event = items.popleft()
            events.put_nowait(event)
