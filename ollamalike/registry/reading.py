"""Reading registry responses safely: small bodies whole up to a bound, blob streams watched for stalls.

``range_starts_at`` checks a 206's Content-Range; ``widen_reads`` tunes aiohttp's socket reads.
``read_bounded`` reads a manifest or a token answer to its end (a body may come in any number of
network pieces) and refuses one over the bound. ``StallWatch`` is the per-stream stall rule of a
pull (``config.pull_stall_timeout``, ``OLLAMALIKE_PULL_STALL_TIMEOUT``): a read that waits longer
than the timeout, or a stream that brings less than ``STALL_MIN_BYTES`` (or the rest of what it
still owes, when that is less) in that much time spent waiting on the network, has stalled. Only
time spent waiting for the network counts, so back-pressure from the disk or the hasher never
looks like a stall; a slow-loris server that trickles a few bytes at a time does.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp

from ollamalike.errors import RegistryError

STALL_MIN_BYTES = 64 * 1024


class Stalled(aiohttp.ClientPayloadError):
    """A blob stream stopped delivering: retried like a broken stream, with its own budget."""


class StallWatch:
    """Counts network wait and bytes per window of ``timeout`` seconds for one stream of ``length`` bytes."""

    def __init__(self, timeout: float | None, length: int) -> None:
        self.timeout = timeout
        self.left = length
        self._waited = 0.0
        self._got = 0

    def timed_out(self) -> Stalled:
        """The error for a single read that waited the whole timeout."""
        return Stalled(f"stalled: nothing received for {self.timeout:g} s (read timed out)")

    def tick(self, waited: float, got: int) -> None:
        """One read waited ``waited`` seconds for ``got`` bytes; raises ``Stalled`` at a starved window's end."""
        if self.timeout is None:
            return
        self._waited += waited
        self._got += got
        if self._waited < self.timeout:
            return
        want = min(STALL_MIN_BYTES, self.left)
        if self._got < want:
            raise Stalled(f"stalled: only {self._got} bytes received in {self._waited:.3g} s")
        self.left -= self._got
        self._waited, self._got = 0.0, 0


async def read_bounded(
    resp: aiohttp.ClientResponse, limit: int, what: str, host: str, timeout: float | None = None
) -> bytes:
    """The whole body of ``resp`` (``what``, from registry ``host``), refused when over ``limit`` bytes.

    ``timeout``: the stall rule (``StallWatch``) for the body, so a trickled manifest cannot hold a pull.
    """
    declared = resp.content_length
    if declared is not None and declared > limit:
        raise RegistryError(f"registry {host}: {what} is too large ({declared} bytes, the limit is {limit})")
    watch = StallWatch(timeout, declared if declared is not None else limit)
    body = bytearray()
    try:
        while True:
            waiting = time.monotonic()
            chunk = await resp.content.read(limit + 1 - len(body))
            if not chunk:
                break
            watch.tick(time.monotonic() - waiting, len(chunk))
            body += chunk
            if len(body) > limit:
                raise RegistryError(f"registry {host}: {what} is too large (over {limit} bytes)")
    except Stalled as e:
        raise RegistryError(f"registry {host}: the {what} {e}") from None
    except asyncio.TimeoutError:
        raise RegistryError(f"registry {host}: the {what} {watch.timed_out()}") from None
    except aiohttp.ClientError as e:
        raise RegistryError(f"registry {host}: reading the {what} failed: {e or type(e).__name__}") from None
    return bytes(body)


def range_starts_at(content_range: str, start: int) -> bool:
    """``bytes 100-199/1000`` starts at 100."""
    unit, _, rest = content_range.strip().partition(" ")
    first = rest.partition("-")[0]
    return unit == "bytes" and first.isdigit() and int(first) == start


def widen_reads(resp: aiohttp.ClientResponse, size: int) -> None:
    """Let the event loop take up to ``size`` bytes per socket read instead of asyncio's 256 KiB.

    Every read walks the whole stack (selector, transport, HTTP parser, stream reader), so on a
    fast link fewer, larger reads are much cheaper in CPU. Only a tuning: skipped when the
    transport does not have asyncio's ``max_size``.
    """
    transport = resp.connection.transport if resp.connection is not None else None
    if transport is not None and isinstance(getattr(transport, "max_size", None), int):
        transport.max_size = max(transport.max_size, size)  # type: ignore[attr-defined]
