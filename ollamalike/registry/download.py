"""Downloading one blob into the store: parallel ranged parts, resume, verification, retries.

A large blob is split into parts of at least ``MIN_PART`` bytes (at most ``MAX_CHUNKS`` of them),
fetched in order by up to ``MAX_PARTS`` concurrent Range requests (``LOCAL_PARTS`` for a registry
on this machine) and written at their offsets into the store's partial file by one writer thread
per blob, which also hashes in order (``OrderedHasher``) while the event loop keeps reading.
Taking parts in order keeps the data arriving roughly in order, so the hash keeps up with the
download instead of trailing it. How far
each part got is saved (``PartState``) every few MiB, so a killed process or a lost connection
resumes where it stopped; the saved count never runs ahead of bytes already handed to the kernel.
A server that ignores Range (200 instead of 206) makes us fall back to one sequential stream.
Nothing becomes visible until ``PartialBlob.finish()`` has matched the digest.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from ollamalike.errors import RegistryError
from ollamalike.registry.oci import RegistryClient

log = logging.getLogger("ollamalike.registry")

MIN_PART = 16 * 1024 * 1024
MAX_CHUNKS = 1024
MAX_PARTS = 8  # concurrent ranged requests per blob
# A registry on this machine is limited by CPU, not by the network: extra streams only add
# per-connection overhead and compete with the registry process for the same cores (measured on
# 2 cores: one stream used ~1.4 s CPU per GiB, two ~2.0 s). Its parts are then fetched in turn.
LOCAL_PARTS = 1
# ...and every request costs it far more than the bytes do (measured: a 1 GiB pull in 16 MiB parts
# took twice as long as in 128 MiB parts), so a local blob is cut in a few large parts.
LOCAL_CHUNKS = 8
WRITE_CHUNK = 4 * 1024 * 1024  # bytes per write+hash batch handed to the writer thread
MAX_BATCH = 256  # network pieces per batch (one pwritev)
FLUSH_EVERY = 128 * 1024 * 1024  # bytes between background fdatasyncs of the partial file
RECV_SIZE = 1024 * 1024  # bytes per socket read on the event loop
MAX_INFLIGHT = 4  # batches per part queued for the writer thread before reading waits
SAVE_EVERY = 32 * 1024 * 1024
PENDING_LIMIT = 128 * 1024 * 1024  # bytes ahead of the hash frontier kept in memory per blob


class PartState(Protocol):
    """Where part progress of interrupted pulls is kept (the store's catalog)."""

    def get(self, digest: str) -> dict[str, Any] | None: ...

    def set(self, digest: str, state: dict[str, Any]) -> None: ...

    def clear(self, digest: str) -> None: ...


class IntegrityError(RegistryError):
    """The server sent something other than the blob: the partial file is worthless."""


class RangeIgnored(Exception):
    """The server answered a Range request with the whole blob."""


@dataclass
class Part:
    start: int
    end: int  # exclusive
    done: int = 0

    @property
    def remaining(self) -> int:
        return self.end - self.start - self.done


def plan_parts(size: int, chunks: int = MAX_CHUNKS) -> list[Part]:
    step = max(MIN_PART, -(-size // chunks))
    parts = [Part(start, min(size, start + step)) for start in range(0, size, step)]
    return parts or [Part(0, size)]


def _restore(state: dict[str, Any] | None, size: int) -> list[Part] | None:
    """Parts from a saved state, or None when it does not describe this blob sanely."""
    if not isinstance(state, dict) or state.get("size") != size or not isinstance(state.get("parts"), list):
        return None
    parts: list[Part] = []
    pos = 0
    for item in state["parts"]:
        if not (isinstance(item, list) and len(item) == 3 and all(isinstance(x, int) for x in item)):
            return None
        start, end, done = item
        if start != pos or end <= start or not 0 <= done <= end - start:
            return None
        parts.append(Part(start, end, done))
        pos = end
    return parts if pos == size else None


def _range_starts_at(content_range: str, start: int) -> bool:
    """``bytes 100-199/1000`` starts at 100."""
    unit, _, rest = content_range.strip().partition(" ")
    first = rest.partition("-")[0]
    return unit == "bytes" and first.isdigit() and int(first) == start


def _widen_reads(resp: aiohttp.ClientResponse) -> None:
    """Let the event loop take up to ``RECV_SIZE`` per socket read instead of asyncio's 256 KiB.

    Every read walks the whole stack (selector, transport, HTTP parser, stream reader), so on a
    fast link fewer, larger reads are much cheaper in CPU. Only a tuning: skipped when the
    transport does not have asyncio's ``max_size``.
    """
    transport = resp.connection.transport if resp.connection is not None else None
    if transport is not None and isinstance(getattr(transport, "max_size", None), int):
        transport.max_size = max(transport.max_size, RECV_SIZE)  # type: ignore[attr-defined]


def _is_loopback(host: str) -> bool:
    """``127.0.0.1:5000``, ``[::1]:5000`` or ``localhost``: a registry on this machine."""
    name = host.lower()
    if name.startswith("[") and "]" in name:
        name = name[1 : name.index("]")]
    elif name.count(":") == 1:
        name = name.rsplit(":", 1)[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class OrderedHasher:
    """sha256 of the blob in byte order while its parts arrive out of order.

    Called only from the blob's one writer thread, right after each write, so it needs no lock and
    the event loop never waits on hashing. Bytes landing at the frontier are hashed straight from
    memory; a run that landed ahead is kept in memory (up to ``PENDING_LIMIT``) or, beyond that,
    read back from the partial file (usually from the page cache) once the frontier reaches it.
    The download thus ends with its digest known, and the store need not read the file again.
    """

    def __init__(self, path: Any, parts: list[Part]) -> None:
        self.path = path
        self.reset(parts)

    def reset(self, parts: list[Part]) -> None:
        """Start over; bytes already in the file (a resumed pull's ``done``) are hashed from it."""
        self.sha = hashlib.sha256()
        self.frontier = 0
        # Written runs ahead of the frontier, keyed by offset: their bytes, or their length when
        # they must be read back from the file. Writes within a part chain offset to offset.
        self.ahead: dict[int, list[bytes] | int] = {p.start: p.done for p in parts if p.done}
        self.ahead_bytes = 0
        self._catch_up()

    def written(self, pos: int, chunks: Sequence[bytes]) -> None:
        """``chunks`` were just written back to back from ``pos``."""
        size = sum(len(c) for c in chunks)
        if pos == self.frontier:
            for c in chunks:
                self.sha.update(c)
            self.frontier += size
            self._catch_up()
        elif pos > self.frontier:
            if self.ahead_bytes + size <= PENDING_LIMIT:
                self.ahead[pos] = list(chunks)
                self.ahead_bytes += size
            else:
                self.ahead[pos] = size

    def _catch_up(self) -> None:
        while (item := self.ahead.pop(self.frontier, None)) is not None:
            if isinstance(item, int):
                self._hash_file(self.frontier, self.frontier + item)
                self.frontier += item
                continue
            for c in item:
                self.sha.update(c)
                self.frontier += len(c)
                self.ahead_bytes -= len(c)

    def _hash_file(self, start: int, end: int) -> None:
        with open(self.path, "rb") as f:
            f.seek(start)
            left = end - start
            while left > 0:
                chunk = f.read(min(WRITE_CHUNK, left))
                if not chunk:
                    raise IntegrityError("partial file is shorter than the bytes written to it")
                self.sha.update(chunk)
                left -= len(chunk)

    def digest(self, size: int) -> str | None:
        return "sha256:" + self.sha.hexdigest() if self.frontier == size else None


class BlobDownload:
    """Fetch ``digest`` of ``size`` bytes into ``partial``; ``progress(completed)`` after each chunk."""

    def __init__(
        self,
        client: RegistryClient,
        partial: Any,
        digest: str,
        size: int,
        state: PartState,
        progress: Callable[[int], None],
    ) -> None:
        self.client = client
        self.partial = partial
        self.digest = digest
        self.size = size
        self.state = state
        self.progress = progress
        self.parts: list[Part] = []
        self.transferred = 0  # bytes received over the network in this run
        self._unsaved = 0
        self.hasher = OrderedHasher(partial.path, self.parts)
        self._disk: ThreadPoolExecutor | None = None
        self._flushing: asyncio.Future[None] | None = None
        self._unflushed = 0

    @property
    def hashed(self) -> str | None:
        """The digest of what was written, once every byte has been hashed in order."""
        return self.hasher.digest(self.size)

    @property
    def completed(self) -> int:
        return sum(p.done for p in self.parts)

    def _snapshot(self) -> dict[str, Any]:
        return {"size": self.size, "parts": [[p.start, p.end, p.done] for p in self.parts]}

    def _save(self) -> None:
        self.state.set(self.digest, self._snapshot())
        self._unsaved = 0

    async def run(self) -> None:
        restored = _restore(self.state.get(self.digest), self.size)
        if restored is not None and max((p.start + p.done for p in restored if p.done), default=0) > self.partial.offset:
            restored = None  # the file is shorter than the state claims: it is not that file
        local = _is_loopback(self.client.name.host)
        self.parts = restored if restored is not None else plan_parts(self.size, LOCAL_CHUNKS if local else MAX_CHUNKS)
        if restored is None:
            self._save()
        # One thread per blob writes and hashes, in submission order, while the event loop keeps
        # reading sockets: on few cores this overlap is most of the speed.
        self._disk = ThreadPoolExecutor(max_workers=1, thread_name_prefix="blob-writer")
        try:
            await self._on_disk(self.hasher.reset, self.parts)  # what a killed pull already wrote
            self.progress(self.completed)
            try:
                await self._fetch_all()
            except RangeIgnored:
                log.info("registry ignores Range for %s: one sequential stream", self.digest)
                self.parts = [Part(0, self.size)]
                # Queued behind any write still pending from the abandoned parts.
                await self._on_disk(self.hasher.reset, self.parts)
                self._save()
                self.progress(0)
                await self._fetch_part(self.parts[0], ranged=False)
        finally:
            self._disk.shutdown(wait=False, cancel_futures=True)
            if self._flushing is not None:
                await asyncio.gather(self._flushing, return_exceptions=True)
        self._save()

    def _on_disk(self, fn: Callable[..., None], *args: Any) -> asyncio.Future[None]:
        assert self._disk is not None
        return asyncio.get_running_loop().run_in_executor(self._disk, fn, *args)

    def _write_and_hash(self, pos: int, chunks: list[bytes]) -> None:
        self.partial.write_chunks_at(pos, chunks)
        self.hasher.written(pos, chunks)

    async def _fetch_all(self) -> None:
        todo = [p for p in self.parts if p.remaining > 0]
        if not todo:
            return
        ranged = len(self.parts) > 1 or self.parts[0].done > 0
        queue = iter(todo)  # shared: each worker takes the next part in blob order

        async def worker() -> None:
            for part in queue:
                await self._fetch_part(part, ranged)

        width = LOCAL_PARTS if _is_loopback(self.client.name.host) else MAX_PARTS
        tasks = [asyncio.create_task(worker()) for _ in range(min(width, len(todo)))]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _fetch_part(self, part: Part, ranged: bool) -> None:
        attempt = 0
        while part.remaining > 0:
            before = part.done
            try:
                await self._stream_part(part, ranged)
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError) as e:
                if part.done == before:
                    attempt += 1  # progress resets the budget: only a stuck part gives up
                if attempt >= self.client.retry.attempts:
                    raise RegistryError(f"download of {self.digest[7:19]} failed: {e or type(e).__name__}") from None
                await asyncio.sleep(self.client.retry.delay(attempt))

    async def _stream_part(self, part: Part, ranged: bool) -> None:
        start = part.start + part.done
        resp = await self.client.open_blob(self.digest, start, part.end if ranged else None)
        async with resp:
            if resp.status == 200 and start > 0:
                raise RangeIgnored()
            if resp.status == 200 and ranged and part.end != self.size:
                raise RangeIgnored()
            if resp.status == 206 and not _range_starts_at(resp.headers.get("Content-Range", ""), start):
                raise IntegrityError(f"registry answered blob {self.digest[7:19]} with the wrong range")
            limit = part.end - start
            declared = resp.content_length
            if declared is not None and declared > limit:
                raise IntegrityError(
                    f"blob {self.digest[7:19]} is larger than its declared size of {self.size} bytes"
                )
            _widen_reads(resp)
            pos = start
            # Network reads arrive in pieces of up to 256 KiB; they are written (pwritev, no join)
            # and hashed in batches on the writer thread while this coroutine reads on. Batches
            # count as done only once written, in order, so the saved state never runs ahead.
            batch: list[bytes] = []
            buffered = 0
            inflight: deque[tuple[asyncio.Future[None], int]] = deque()
            try:
                async for chunk in resp.content.iter_any():
                    if pos + buffered + len(chunk) > part.end:
                        raise IntegrityError(
                            f"blob {self.digest[7:19]} is larger than its declared size of {self.size} bytes"
                        )
                    batch.append(chunk)
                    buffered += len(chunk)
                    self.transferred += len(chunk)
                    if buffered >= WRITE_CHUNK or len(batch) >= MAX_BATCH:
                        inflight.append((self._on_disk(self._write_and_hash, pos, batch), buffered))
                        pos += buffered
                        batch, buffered = [], 0
                        while inflight and (inflight[0][0].done() or len(inflight) > MAX_INFLIGHT):
                            await self._settle(part, *inflight.popleft())
            finally:
                if batch:
                    inflight.append((self._on_disk(self._write_and_hash, pos, batch), buffered))
                    pos += buffered
                while inflight:
                    await self._settle(part, *inflight.popleft())
            if pos < part.end:
                raise aiohttp.ClientPayloadError(f"connection closed after {pos - start} of {limit} bytes")

    async def _settle(self, part: Part, write: asyncio.Future[None], size: int) -> None:
        """Wait for a batch's write, count it as done (only now is it in the kernel's hands), maybe save."""
        await write
        part.done += size
        self._unsaved += size
        self._unflushed += size
        if FLUSH_EVERY and self._unflushed >= FLUSH_EVERY and (self._flushing is None or self._flushing.done()):
            # Disk write-out overlaps the download instead of all waiting for the final fsync.
            # Not awaited: it only shortens that fsync, which still guarantees durability.
            self._unflushed = 0
            self._flushing = asyncio.get_running_loop().run_in_executor(None, self.partial.flush)
        if self._unsaved >= max(SAVE_EVERY, self.size // 512):
            # The snapshot is taken here; a slow catalog commit (fsync) then waits in a thread.
            # Concurrent saves may land out of order, which only ever under-states progress.
            snapshot = self._snapshot()
            self._unsaved = 0
            await asyncio.to_thread(self.state.set, self.digest, snapshot)
        self.progress(self.completed)
