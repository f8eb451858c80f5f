"""``push_model``: upload a model's blobs and its manifest bytes, unchanged, to an OCI registry.

Yields Ollama's status lines: ``retrieving manifest``, one ``pushing <12 hex>`` stream per blob
(digest, total, completed), ``pushing manifest``, ``success``. Blobs the registry already has
(HEAD 200) are skipped; the rest are streamed up from the store (large ones in chunks that
resume after a failure or a restart, see ``upload``). The manifest is sent byte-for-byte as
stored, so its digest on the registry equals the local one. A ``name@sha256:…`` reference is refused
(400: a digest names a manifest, it cannot be pushed to), and the target must be allowed
(``policy.check_push``; ``local``: the request comes from this machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator

import aiohttp

from ollamalike.config import Config
from ollamalike.errors import BadRequest, InternalError
from ollamalike.names import ModelName
from ollamalike.registry import oci, policy
from ollamalike.registry.pull import PROGRESS_INTERVAL, Status, StorePartState, relay, short
from ollamalike.registry.upload import BlobUpload, Body
from ollamalike.store import Store
from ollamalike.store.manifest import manifest_blobs

UPLOAD_CHUNK = 1024 * 1024


async def push_model(
    store: Store,
    config: Config,
    name_text: str,
    *,
    insecure: bool = False,
    session: aiohttp.ClientSession | None = None,
    local: bool = True,
) -> AsyncIterator[Status]:
    if isinstance(name_text, str) and "@" in name_text:
        raise BadRequest(f"cannot push to {name_text.strip()!r}: a digest reference cannot be pushed to, name a tag")
    name = ModelName.parse(name_text)
    if name.is_huggingface:
        raise BadRequest("pushing to Hugging Face is not supported")
    policy.check_push(config, name, insecure, local)
    yield {"status": "retrieving manifest"}
    _, manifest, body = store.get_manifest(name)
    media_type = manifest.get("mediaType") or oci.MANIFEST_V2
    config_blob, *layers = manifest_blobs(manifest)  # validated when it was stored
    own_session = session is None
    if session is None:
        session = oci.new_session()
    try:
        client = oci.RegistryClient(
            session, name, insecure=insecure, registry_auth=config.registry_auth, push=True, proxies=config.proxies
        )
        seen: set[str] = set()
        for desc in [*layers, config_blob]:
            digest, size = desc.digest, desc.size
            if digest in seen:
                continue
            seen.add(digest)
            async for status in _push_blob(store, client, digest, size):
                yield status
        yield {"status": "pushing manifest"}
        await client.put_manifest(name.tag, body, media_type)
        yield {"status": "success"}
    finally:
        if own_session:
            await session.close()


async def _push_blob(
    store: Store, client: oci.RegistryClient, digest: str, size: int
) -> AsyncIterator[Status]:
    status = f"pushing {short(digest)}"
    if await client.has_blob(digest):
        yield {"status": status, "digest": digest, "total": size, "completed": size}
        return
    path = store.blob_path(digest)
    try:
        blob = open(path, "rb")  # noqa: SIM115 (closed below, after the upload that reads it)
    except OSError as e:
        raise InternalError(f"blob {short(digest)} is missing from the store ({e.strerror}); pull or create the model again") from None
    with blob:
        if os.fstat(blob.fileno()).st_size != size:
            raise InternalError(f"blob {short(digest)} in the store is not {size} bytes as its manifest says")
        saved = StorePartState(store, prefix=f"upload:{client.name.host}/{client.name.repository}:")
        async for line in _upload(client, digest, size, _reader(blob.fileno()), saved):
            yield line


def _reader(fd: int) -> Body:
    async def read(start: int, end: int) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        pos = start
        # Read in a thread: a model not in the page cache would stall the daemon's loop.
        while pos < end and (chunk := await loop.run_in_executor(None, os.pread, fd, min(UPLOAD_CHUNK, end - pos), pos)):
            pos += len(chunk)
            yield chunk

    return read


async def _upload(
    client: oci.RegistryClient, digest: str, size: int, read: Body, saved: StorePartState
) -> AsyncIterator[Status]:
    status = f"pushing {short(digest)}"
    queue: asyncio.Queue[int | BaseException | None] = asyncio.Queue()
    last = 0.0

    async def body(start: int, end: int) -> AsyncIterator[bytes]:
        """The blob's bytes, reporting progress (counted from the blob's start) as they go."""
        nonlocal last
        sent = start
        async for chunk in read(start, end):
            sent += len(chunk)
            now = time.monotonic()
            if now - last >= PROGRESS_INTERVAL:
                last = now
                queue.put_nowait(sent)
            yield chunk

    yield {"status": status, "digest": digest, "total": size, "completed": 0}
    upload = BlobUpload(client, digest, size, body, saved)
    async with contextlib.aclosing(relay(queue, upload.run())) as progress:
        async for sent in progress:
            if sent < size:
                yield {"status": status, "digest": digest, "total": size, "completed": sent}
    yield {"status": status, "digest": digest, "total": size, "completed": size}
