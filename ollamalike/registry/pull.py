"""``pull_model``: fetch a manifest and its blobs from an OCI registry into the store, with progress.

Yields Ollama's status lines: ``pulling manifest``, one ``pulling <12 hex>`` stream per blob (with
digest, total, completed), ``verifying sha256 digest``, ``writing manifest``, ``success``. Blobs
download concurrently; the manifest is validated (digests, sizes, media types) before any file is
written, and the tag only moves after every blob is verified and in place. ``hf.co/…`` names are
handed to ``registry.hf``. A pinned reference ``model[:tag]@sha256:<hex>`` fetches exactly that
manifest (by digest), checks that its bytes hash to the pin, and stores it under the name's tag.
The registry must be allowed (``policy``); catalog failures (a full disk) are clear errors that
keep what was downloaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import shutil
import sqlite3
import time
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine
from typing import TypeAlias, TypeVar

import aiohttp

from ollamalike.config import Config
from ollamalike.errors import BadRequest, InternalError, OllamalikeError, RegistryError
from ollamalike.jsontypes import JSONObject
from ollamalike.names import DIGEST_RE, ModelName
from ollamalike.registry import oci, policy
from ollamalike.registry.download import BlobDownload, PartState
from ollamalike.registry.parts import IntegrityError
from ollamalike.store import Store
from ollamalike.store.manifest import Descriptor, manifest_blobs, parse_manifest

T = TypeVar("T")

# One status line of a pull, push or import, as the NDJSON stream sends it.
Status: TypeAlias = JSONObject

PROGRESS_INTERVAL = 0.1  # seconds between progress lines for one blob

# One download per blob at a time across the daemon: two pulls sharing a layer must not both
# write its partial file. Keyed by (models dir, digest).
_blob_locks: dict[tuple[str, str], asyncio.Lock] = {}


def _blob_lock(store: Store, digest: str) -> asyncio.Lock:
    key = (str(store.root), digest)
    lock = _blob_locks.get(key)
    if lock is None:
        lock = _blob_locks[key] = asyncio.Lock()
    return lock


def short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


def pinned_digest(name_text: str) -> str | None:
    """``sha256:<hex>`` of a ``name@sha256:<hex>`` reference, or None (``ModelName.parse`` checks its form)."""
    if not isinstance(name_text, str) or "@" not in name_text:
        return None
    m = DIGEST_RE.match(name_text.rpartition("@")[2].strip().replace(":", "-", 1))
    return f"sha256:{m.group(1)}" if m else None


def catalog_error(e: sqlite3.Error, doing: str, kept: str) -> InternalError:
    return InternalError(f"cannot {doing} in the model catalog: {e}; {kept}")


def check_manifest(body: bytes) -> list[Descriptor]:
    """The blobs (config, then layers) of a manifest from a registry, once the whole of it is validated."""
    try:
        return manifest_blobs(parse_manifest(body))
    except BadRequest as e:
        raise RegistryError(f"registry sent an {e.message}") from None


async def pull_model(
    store: Store,
    config: Config,
    name_text: str,
    *,
    insecure: bool = False,
    session: aiohttp.ClientSession | None = None,
    stats: dict[str, int] | None = None,
) -> AsyncIterator[Status]:
    name = ModelName.parse(name_text)
    pin = pinned_digest(name_text)
    policy.check_pull(config, name, insecure)
    if name.is_huggingface:
        if pin is not None:
            raise BadRequest("hf.co models cannot be pulled by digest: name a quantization tag instead")
        from ollamalike.registry import hf

        async for status in hf.pull_hf(store, config, name):
            yield status
        return
    own_session = session is None
    if session is None:
        session = oci.new_session(read_timeout=config.pull_stall_timeout)
    try:
        client = oci.RegistryClient(
            session, name, insecure=insecure, registry_auth=config.registry_auth, proxies=config.proxies
        )
        yield {"status": "pulling manifest"}
        body, _ = await client.get_manifest(pin or name.tag)
        if pin is not None and "sha256:" + hashlib.sha256(body).hexdigest() != pin:
            raise RegistryError(
                f"registry {name.host} sent a manifest for {pin[7:19]} whose sha256 is "
                f"{hashlib.sha256(body).hexdigest()[:12]}: not the pinned manifest"
            )
        blobs = check_manifest(body)
        _check_disk_space(store, blobs)
        # Pinned so a concurrent delete's garbage collection cannot take blobs not yet tagged.
        with store.pin(d.digest for d in blobs):
            async for status in _download_all(store, client, blobs, stats):
                yield status
            yield {"status": "verifying sha256 digest"}
            yield {"status": "writing manifest"}
            try:
                await asyncio.to_thread(store.put_manifest, name, body)
            except sqlite3.Error as e:
                raise catalog_error(e, f"record {name.display}", "its blobs are kept, pull again to finish") from None
        yield {"status": "success"}
    finally:
        if own_session:
            await session.close()


def _check_disk_space(store: Store, blobs: list[Descriptor]) -> None:
    """Refuse up front what cannot fit, rather than filling the disk and failing at the end."""
    missing = {d.digest: d.size for d in blobs if not store.has_blob(d.digest)}
    need = sum(missing.values())
    if not need:
        return
    free = shutil.disk_usage(store.root).free
    if need > free:
        raise InternalError(f"not enough disk space to pull: need {need} bytes, {free} bytes free")


async def _download_all(
    store: Store, client: oci.RegistryClient, blobs: list[Descriptor], stats: dict[str, int] | None
) -> AsyncIterator[Status]:
    """Run every blob's download at once; interleave their progress lines as Ollama does."""
    queue: asyncio.Queue[Status | BaseException | None] = asyncio.Queue()
    seen: set[str] = set()
    unique = []
    for desc in blobs:
        if desc.digest not in seen:
            seen.add(desc.digest)
            unique.append(desc)

    async def one(desc: Descriptor) -> None:
        digest, size = desc.digest, desc.size
        status = f"pulling {short(digest)}"
        last = 0.0
        sent = -1

        def progress(completed: int, force: bool = False) -> None:
            nonlocal last, sent
            now = time.monotonic()
            if completed != sent and (force or now - last >= PROGRESS_INTERVAL or completed == size):
                last, sent = now, completed
                queue.put_nowait({"status": status, "digest": digest, "total": size, "completed": completed})

        async with _blob_lock(store, digest):
            if store.has_blob(digest):
                progress(size, force=True)
                return
            partial = store.partial(digest, size)
            state = _part_state(store)
            download = BlobDownload(client, partial, digest, size, state, progress)
            try:
                await download.run()
            except IntegrityError:
                partial.discard()
                state.clear(digest)
                raise
            except asyncio.CancelledError:
                if download.completed == 0:  # nothing worth resuming: leave no trace
                    partial.discard()
                    state.clear(digest)
                raise
            except OSError as e:  # the store's disk: full, read-only, failing
                raise InternalError(
                    f"cannot write blob {short(digest)} to the store: {e.strerror or e}; "
                    "what was downloaded is kept, pull again to resume"
                ) from None
            finally:
                if stats is not None:
                    stats["transferred"] = stats.get("transferred", 0) + download.transferred
            finishing = asyncio.ensure_future(asyncio.to_thread(partial.finish, download.hashed))
            try:
                await asyncio.shield(finishing)
            except asyncio.CancelledError:
                # The thread renames the file whatever happens: the blob's lock is held until it
                # has, or the next pull of this blob would write a partial that the rename takes.
                await asyncio.gather(finishing, return_exceptions=True)
                raise
            except OllamalikeError:
                state.clear(digest)
                raise
            state.clear(digest)
            progress(size, force=True)

    async def fetch_all() -> None:
        tasks = [asyncio.create_task(one(d)) for d in unique]
        try:
            await asyncio.gather(*tasks)
        finally:
            # One blob failing stops the others (gather alone would leave them running).
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async with contextlib.aclosing(relay(queue, fetch_all())) as items:
        async for item in items:
            yield item


async def relay(
    queue: asyncio.Queue[T | BaseException | None], work: Coroutine[object, object, None]
) -> AsyncGenerator[T, None]:
    """Run ``work`` as a task and yield what it puts on ``queue`` until it ends; its error is raised
    here. Closing the generator (a client gone) cancels the work."""

    async def run() -> None:
        try:
            await work
            queue.put_nowait(None)
        except BaseException as e:
            queue.put_nowait(e)
            raise

    task = asyncio.create_task(run())
    try:
        while True:
            item = await queue.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class StorePartState:
    """Progress of interrupted transfers, kept in the store's catalog (survives restarts): blob
    downloads under ``blob:<digest>``, uploads under ``upload:<registry/repository>:<digest>``."""

    def __init__(self, store: Store, prefix: str = "blob:") -> None:
        self.store = store
        self.prefix = prefix

    def get(self, digest: str) -> JSONObject | None:
        state: JSONObject | None = self.store.get_pull(self.prefix + digest)
        return state

    def set(self, digest: str, state: JSONObject) -> None:
        try:
            self.store.record_pull(self.prefix + digest, state)
        except sqlite3.Error as e:  # "database or disk is full", most likely
            raise catalog_error(
                e, f"save the progress of {short(digest)}", "what was transferred is kept, try again to resume"
            ) from None

    def clear(self, digest: str) -> None:
        try:
            self.store.clear_pull(self.prefix + digest)
        except sqlite3.Error as e:
            raise catalog_error(e, f"clear the progress of {short(digest)}", "try again") from None


def _part_state(store: Store) -> PartState:
    return StorePartState(store)
