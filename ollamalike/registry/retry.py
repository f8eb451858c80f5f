"""When a registry operation is tried again, and how long to wait first: the one retry policy of a pull or a push.

``RetryPolicy`` holds the numbers and the rules; ``Tries`` counts one operation's failures against it.
Every retry loop of the registry client asks them (``oci.RegistryClient.request`` for a request,
``download`` for a blob part's stream, ``upload`` for an upload chunk), so the rules live here only:

- retryable: a broken or refused connection, a broken body, a timeout, and the statuses in
  ``TRANSIENT_STATUS``. Not: a TLS failure, a name that does not resolve, a proxy that refused us
  (``is_transient``); those are answered at once.
- the budget: ``attempts`` tries in all. A registry that has never answered anything is most
  likely down, so it gets only ``first_contact_attempts`` quick tries (``budget``); once it has
  answered, a failure is more likely a blip worth the whole budget.
- backoff: ``base_delay * 2**step``, at most ``max_delay``; a ``Retry-After`` of whole seconds is
  obeyed, up to ``max_delay`` (``delay``).
- stalls (``reading.StallWatch``) have their own count (``Stalls``): ``stall_attempts`` stalls in a
  row, with less than ``STALL_MIN_BYTES`` of progress between them, end a blob download.

``sleep`` is a field so that a test can run the policy on a fake clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp

from ollamalike.registry.reading import STALL_MIN_BYTES

TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
FIRST_CONTACT_ATTEMPTS = 3  # connection attempts before a registry that never answered is called unreachable
STALL_ATTEMPTS = 3  # stalls in a row (no STALL_MIN_BYTES of progress between) before a part gives up

Sleep = Callable[[float], Awaitable[None]]


def is_transient(error: BaseException) -> bool:
    """Whether a failure to get an answer (or to read one) is worth another try."""
    if isinstance(error, (aiohttp.ClientSSLError, aiohttp.ClientConnectorDNSError, aiohttp.ClientHttpProxyError)):
        # Not transient in any useful sense: a certificate, a name that does not resolve, a proxy's refusal.
        return False
    return isinstance(error, (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError))


@dataclass
class RetryPolicy:
    attempts: int = 6
    base_delay: float = 0.25
    max_delay: float = 8.0
    first_contact_attempts: int = FIRST_CONTACT_ATTEMPTS
    stall_attempts: int = STALL_ATTEMPTS
    sleep: Sleep = field(default=asyncio.sleep, repr=False, compare=False)

    def delay(self, step: int, retry_after: str | None = None) -> float:
        """Seconds to wait before try ``step + 1`` (``step`` 0: after the first failure)."""
        if retry_after and retry_after.strip().isdigit():
            return min(float(retry_after), self.max_delay)
        return min(self.base_delay * 2.0 ** max(step, 0), self.max_delay)

    async def pause(self, step: int, retry_after: str | None = None) -> None:
        await self.sleep(self.delay(step, retry_after))

    def budget(self, reached: bool) -> int:
        """Tries in all for a request to a registry that has (``reached``) or has not answered yet."""
        return self.attempts if reached else min(self.attempts, self.first_contact_attempts)

    @staticmethod
    def retryable_status(status: int) -> bool:
        return status in TRANSIENT_STATUS


class Tries:
    """The failures of one operation so far (a request, a blob part, an upload's chunks)."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.failures = 0

    def failed(self, limit: int | None = None) -> bool:
        """Count one failure; True when another try still fits in ``limit`` tries (the policy's ``attempts``)."""
        self.failures += 1
        return self.failures < (self.policy.attempts if limit is None else limit)

    def left(self, limit: int | None = None) -> bool:
        """Whether the failures counted so far leave another try (nothing is counted)."""
        return self.failures < (self.policy.attempts if limit is None else limit)

    def reset(self) -> None:
        """The operation made progress: its earlier failures no longer count."""
        self.failures = 0


class Stalls:
    """Stalls in a row of one blob stream: only real progress between two stalls forgives the first."""

    def __init__(self, policy: RetryPolicy, done: int = 0) -> None:
        self.policy = policy
        self.count = 0
        self._since = done  # bytes done at the last stall

    def stalled(self, done: int) -> bool:
        """A stall with ``done`` bytes of the stream done; True when another try is allowed."""
        # A trickle makes progress, so stalls only forgive after real progress.
        self.count = 1 if done - self._since >= STALL_MIN_BYTES else self.count + 1
        self._since = done
        return self.count < self.policy.stall_attempts
