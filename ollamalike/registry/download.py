"""Downloading one blob into the store: parallel ranged parts, resume, verification, retries.

A large blob is split into parts (``parts.plan_parts``), fetched in order by up to ``MAX_PARTS``
concurrent Range requests (``LOCAL_PARTS`` for a registry on this machine) and written at their
offsets into the store's partial file. One thread per blob hashes in order (``OrderedHasher``);
taking parts in order keeps the data arriving roughly in order, so the hash keeps up with the
download instead of trailing it. A plain-HTTP body is read off its socket by a reader thread per
stream (``rawbody``); a TLS or chunked one through aiohttp, whose pieces the blob's thread both
writes and hashes. How far each part got is saved (``PartState``) every few MiB, so a killed
process or a lost connection resumes where it stopped; the saved count never runs ahead of bytes
already handed to the kernel.
Retries follow the client's ``retry.RetryPolicy`` (a part's stream: ``Tries``, its stalls: ``Stalls``).
A server that ignores Range (200 instead of 206) makes us fall back to one sequential stream;
when such a server also cuts the body short, the blob is fetched again from its first byte, a few
times, then the pull fails saying so. A stream that stalls (``reading.StallWatch``: no data, or
a trickle, for ``config.pull_stall_timeout``) is retried a few times (``retry.STALL_ATTEMPTS``), then
the pull fails naming the stall; what was written is kept for the next pull to resume.
Nothing becomes visible until ``PartialBlob.finish()`` has matched the digest.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec

import aiohttp

from ollamalike.errors import RegistryError
from ollamalike.registry import rawbody
from ollamalike.registry.oci import RegistryClient
from ollamalike.registry.oci import is_loopback_registry as _is_loopback
from ollamalike.registry.parts import (
    MAX_CHUNKS,
    IntegrityError,
    OrderedHasher,
    Part,
    PartState,
    RangeIgnored,
    plan_parts,
    restore_parts,
    snapshot,
)
from ollamalike.registry.reading import Stalled, StallWatch, widen_reads
from ollamalike.registry.reading import range_starts_at as _range_starts_at
from ollamalike.registry.retry import STALL_ATTEMPTS, Stalls, Tries
from ollamalike.store.blobs import PartialBlob

__all__ = ["STALL_ATTEMPTS", "BlobDownload", "PartState", "RangeIgnored"]

log = logging.getLogger("ollamalike.registry")

MAX_PARTS = 8  # concurrent ranged requests per blob
# A registry on this machine is limited by CPU, not by the network: extra streams only add
# per-connection overhead and compete with the registry process for the same cores (measured on
# 2 cores: one stream used ~1.4 s CPU per GiB, two ~2.0 s). Its parts are then fetched in turn.
LOCAL_PARTS = 1
# ...and every request costs it more than the bytes do (measured on 1 GiB: 16 MiB parts took twice
# as long as 128 MiB parts, and 8 parts ~0.1 s more than one), so a local blob is one part: a
# single request, still resumable from where it stopped (the part's progress is saved).
LOCAL_CHUNKS = 1
# Bytes per write+hash batch handed to the blob's thread. Small enough that a batch is still in
# the CPU cache when it is hashed (4 MiB batches measured 30% slower on a 1 GiB local pull).
WRITE_CHUNK = 1024 * 1024
MAX_BATCH = 256  # network pieces per batch (one pwritev)
FLUSH_EVERY = 128 * 1024 * 1024  # bytes between background fdatasyncs of the partial file
RECV_SIZE = 1024 * 1024  # bytes per socket read on the event loop
MAX_INFLIGHT = 4  # batches per part queued for the blob's thread before reading waits
SAVE_EVERY = 32 * 1024 * 1024
REPORT_EVERY = 4 * 1024 * 1024  # bytes a reader thread writes between progress reports to the loop
P = ParamSpec("P")

class BlobDownload:
    """Fetch ``digest`` of ``size`` bytes into ``partial``; ``progress(completed)`` after each chunk."""

    def __init__(
        self,
        client: RegistryClient,
        partial: PartialBlob,
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
        self.local = False  # a registry on this machine (set by run)
        self.hasher = OrderedHasher(partial.path, self.parts)
        self._disk: ThreadPoolExecutor | None = None  # the blob's one thread: hashing, aiohttp's writes
        self._readers: ThreadPoolExecutor | None = None  # one thread per plain-HTTP stream
        self._buffers = rawbody.Buffers()
        self._hash_error: BaseException | None = None
        self._unsaved = 0
        self._saving: asyncio.Future[None] | None = None
        self._unflushed = 0
        self._flushing: asyncio.Future[None] | None = None

    @property
    def hashed(self) -> str | None:
        """The digest of what was written, once every byte has been hashed in order."""
        return self.hasher.digest(self.size)

    @property
    def completed(self) -> int:
        return sum(p.done for p in self.parts)

    def _save(self) -> None:
        self.state.set(self.digest, snapshot(self.size, self.parts))
        self._unsaved = 0

    async def run(self) -> None:
        restored = restore_parts(self.state.get(self.digest), self.size)
        if restored is not None and max((p.start + p.done for p in restored if p.done), default=0) > self.partial.offset:
            restored = None  # the file is shorter than the state claims: it is not that file
        self.local = _is_loopback(self.client.name.host)
        self.parts = restored if restored is not None else plan_parts(self.size, LOCAL_CHUNKS if self.local else MAX_CHUNKS)
        if restored is None:
            self._save()
        self._disk = ThreadPoolExecutor(max_workers=1, thread_name_prefix="blob-hasher")
        self._readers = ThreadPoolExecutor(max_workers=MAX_PARTS, thread_name_prefix="blob-reader")
        # One stream (a local registry) keeps the pool's full depth; parallel streams get 4 each.
        self._buffers = rawbody.Buffers(rawbody.BUFFERS if self.local else 4 * MAX_PARTS)
        try:
            await self._on_disk(self.hasher.reset, self.parts)  # what a killed pull already wrote
            self.progress(self.completed)
            try:
                await self._fetch_all()
            except RangeIgnored:
                log.info("registry ignores Range for %s: one sequential stream", self.digest)
                await self._fetch_whole()
            await self._on_disk(self._check_hashing)  # every hash queued so far has run
        except BaseException:
            await self._stop_workers()
            try:
                self._save()
            except Exception as e:  # the error already on its way says more than a failed save
                log.warning("could not save the progress of %s: %s", self.digest, e)
            raise
        await self._stop_workers()
        # Where every part got: the next pull resumes there.
        self._save()
        if self._saving is not None:
            self._saving.result()  # a failed progress save fails the pull

    async def _stop_workers(self) -> None:
        assert self._readers is not None and self._disk is not None
        self._readers.shutdown(wait=False, cancel_futures=True)
        self._disk.shutdown(wait=False, cancel_futures=True)
        pending = [f for f in (self._flushing, self._saving) if f is not None]
        await asyncio.gather(*pending, return_exceptions=True)

    async def _fetch_whole(self) -> None:
        """Fetch the blob as one stream from its first byte: the server cannot resume a cut one."""
        cut = 0
        for _ in range(self.client.retry.attempts):
            self.parts = [Part(0, self.size)]
            # Queued behind any write still pending from the abandoned parts.
            await self._on_disk(self.hasher.reset, self.parts)
            self._save()
            self.progress(0)
            try:
                await self._fetch_part(self.parts[0], ranged=False)
                return
            except RangeIgnored:  # cut short, and the retry from where it stopped got the whole blob
                cut = self.parts[0].done
                log.info("registry cut %s short at %d of %d bytes and ignores Range: from the start", self.digest, cut, self.size)
        raise RegistryError(
            f"download of {self.digest[7:19]} failed: registry {self.client.name.host} ignores Range requests and "
            f"cut the blob short ({cut} of {self.size} bytes), {self.client.retry.attempts} times; "
            "it cannot be resumed from that registry"
        )

    def _on_disk(self, fn: Callable[P, None], *args: P.args, **kwargs: P.kwargs) -> asyncio.Future[None]:
        assert self._disk is not None
        return asyncio.get_running_loop().run_in_executor(self._disk, functools.partial(fn, *args, **kwargs))

    def _write_and_hash(self, pos: int, chunks: list[bytes]) -> None:
        self.partial.write_chunks_at(pos, chunks)
        self.hasher.written(pos, chunks)

    def _hash_and_release(self, pos: int, data: memoryview, release: Callable[[], None]) -> None:
        try:
            if self._hash_error is None:
                self.hasher.written(pos, [data], copy=True)
        except BaseException as e:  # reported by _check_hashing; the reader must not wait forever
            self._hash_error = e
        finally:
            release()

    def _check_hashing(self) -> None:
        if self._hash_error is not None:
            raise self._hash_error

    async def _fetch_all(self) -> None:
        todo = [p for p in self.parts if p.remaining > 0]
        if not todo:
            return
        ranged = len(self.parts) > 1 or self.parts[0].done > 0
        queue = iter(todo)  # shared: each worker takes the next part in blob order

        async def worker() -> None:
            for part in queue:
                await self._fetch_part(part, ranged)

        width = LOCAL_PARTS if self.local else MAX_PARTS
        tasks = [asyncio.create_task(worker()) for _ in range(min(width, len(todo)))]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _fetch_part(self, part: Part, ranged: bool) -> None:
        policy = self.client.retry
        tries, stalls = Tries(policy), Stalls(policy, part.done)
        while part.remaining > 0:
            before = part.done
            try:
                await self._stream_part(part, ranged)
            except Stalled as e:
                if not stalls.stalled(part.done):
                    raise RegistryError(
                        f"download of {self.digest[7:19]} from registry {self.client.name.host} {e} "
                        f"({stalls.count} times; OLLAMALIKE_PULL_STALL_TIMEOUT); "
                        "what was downloaded is kept, pull again to resume"
                    ) from None
                log.info("blob %s %s; retrying", self.digest[7:19], e)
                await policy.pause(stalls.count - 1)
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError) as e:
                # Only a failure without progress counts: a part that keeps moving never gives up.
                if not (tries.failed() if part.done == before else tries.left()):
                    raise RegistryError(f"download of {self.digest[7:19]} failed: {e or type(e).__name__}") from None
                await policy.pause(tries.failures)

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
            detached = rawbody.detach(resp)
            if detached is not None and declared is not None:
                await self._pump(part, declared, *detached)
            else:
                await self._read_with_aiohttp(part, resp)
            if part.remaining > 0:
                raise aiohttp.ClientPayloadError(f"connection closed after {part.start + part.done - start} of {limit} bytes")

    async def _pump(self, part: Part, length: int, head: bytes, sock: socket.socket) -> None:
        """Read the rest of a detached plain-HTTP body of ``length`` bytes in a reader thread."""
        pump = rawbody.Pump(sock, self.client.read_timeout, self._buffers)
        try:
            if head:
                write = self._on_disk(self._write_and_hash, part.start + part.done, [head])
                await self._settle(part, write, len(head))
            loop = asyncio.get_running_loop()
            unreported = 0  # written by the reader, not yet counted by the loop
            failed: list[Exception] = []  # what counting them raised (a failed progress save)

            def arrived(size: int) -> None:
                # A loop callback: an error here would only be logged, so it stops the reader and
                # is raised below instead.
                try:
                    self._arrived(part, size)
                except Exception as e:
                    if not failed:
                        failed.append(e)
                        pump.stop()

            def report() -> None:
                nonlocal unreported
                if unreported:
                    loop.call_soon_threadsafe(arrived, unreported)
                    unreported = 0

            def sink(at: int, data: memoryview, release: Callable[[], None]) -> None:
                # Reader thread: write first (then the bytes are the kernel's), hash later in order.
                nonlocal unreported
                self.partial.write_chunks_at(at, [data])
                assert self._disk is not None
                self._disk.submit(self._hash_and_release, at, data, release)
                unreported += len(data)
                if unreported >= REPORT_EVERY:
                    report()  # fewer wake-ups of the event loop than one per buffer

            def read() -> None:
                try:
                    pump.run(part.start + part.done, length - len(head), sink)
                finally:
                    report()

            assert self._readers is not None
            job = asyncio.wrap_future(self._readers.submit(read))
            try:
                # All of the reader's _arrived callbacks run before this await returns: they were
                # queued on the loop before the one that completes ``job``.
                await asyncio.shield(job)
            except asyncio.CancelledError:
                pump.stop()
                await asyncio.gather(job, return_exceptions=True)
                raise
            except rawbody.Stopped:
                if failed:
                    raise failed[0] from None
                raise
            if failed:
                raise failed[0]
        finally:
            pump.close()

    async def _read_with_aiohttp(self, part: Part, resp: aiohttp.ClientResponse) -> None:
        """Read a TLS or chunked body through aiohttp; the blob's thread writes and hashes it."""
        widen_reads(resp, RECV_SIZE)
        pos = part.start + part.done
        # Network reads arrive in pieces of up to RECV_SIZE; they are written (pwritev, no join)
        # and hashed in batches on the blob's thread while this coroutine reads on. Batches count
        # as done only once written, in order, so the saved state never runs ahead.
        batch: list[bytes] = []
        buffered = 0
        inflight: deque[tuple[asyncio.Future[None], int]] = deque()
        watch = StallWatch(self.client.read_timeout, part.remaining)
        try:
            while True:
                waiting = time.monotonic()
                try:
                    chunk = await resp.content.readany()
                except asyncio.TimeoutError:  # aiohttp's sock_read: one read waited the whole timeout
                    raise watch.timed_out() from None
                watch.tick(time.monotonic() - waiting, len(chunk))
                if not chunk:
                    break
                if pos + buffered + len(chunk) > part.end:
                    raise IntegrityError(
                        f"blob {self.digest[7:19]} is larger than its declared size of {self.size} bytes"
                    )
                batch.append(chunk)
                buffered += len(chunk)
                if buffered >= WRITE_CHUNK or len(batch) >= MAX_BATCH:
                    inflight.append((self._on_disk(self._write_and_hash, pos, batch), buffered))
                    pos += buffered
                    batch, buffered = [], 0
                    while inflight and (inflight[0][0].done() or len(inflight) > MAX_INFLIGHT):
                        await self._settle(part, *inflight.popleft())
        finally:
            if batch:
                inflight.append((self._on_disk(self._write_and_hash, pos, batch), buffered))
            while inflight:
                await self._settle(part, *inflight.popleft())

    async def _settle(self, part: Part, write: asyncio.Future[None], size: int) -> None:
        """Wait for a batch's write, then count it (only now is it in the kernel's hands)."""
        await write
        self._arrived(part, size)

    def _arrived(self, part: Part, size: int) -> None:
        """``size`` more bytes of ``part`` are written: count them, maybe flush or save progress."""
        part.done += size
        self.transferred += size
        self._unsaved += size
        self._unflushed += size
        loop = asyncio.get_running_loop()
        if FLUSH_EVERY and self._unflushed >= FLUSH_EVERY and (self._flushing is None or self._flushing.done()):
            # Disk write-out overlaps the download instead of all waiting for the final fsync.
            # Not awaited: it only shortens that fsync, which still guarantees durability.
            self._unflushed = 0
            self._flushing = loop.run_in_executor(None, self.partial.flush)
        if self._unsaved >= max(SAVE_EVERY, self.size // 512) and (self._saving is None or self._saving.done()):
            if self._saving is not None:
                self._saving.result()  # surface a failed save now rather than at the end
            # The snapshot is taken here; the catalog commit (an fsync) runs in a thread. Only one
            # at a time, so saves land in order and never overstate progress.
            self._unsaved = 0
            self._saving = asyncio.ensure_future(asyncio.to_thread(self.state.set, self.digest, snapshot(self.size, self.parts)))
        self.progress(self.completed)
