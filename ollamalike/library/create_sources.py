"""The GGUF files a create turns into layers (``Source``): local files, uploaded blobs, a split GGUF's
shards, a converted checkpoint; and storing one as a pinned blob.

A local file is copied into the store only when the manifest is written; an uploaded blob is
pinned the moment it is named, before its existence is checked, so a GC cannot take it between.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ollamalike.errors import BadRequest
from ollamalike.library.create_convert import CheckpointInput, convert_checkpoint
from ollamalike.library.create_paths import check_regular
from ollamalike.store import Pins, Store
from ollamalike.store.manifest import MEDIA_MODEL

if TYPE_CHECKING:
    from ollamalike.library.convert import Prepared
    from ollamalike.library.convert.split import MergedSplit


@dataclass
class Source:
    """A GGUF that becomes a layer: a local file to copy in, or a blob already in the store."""

    media: str
    info: Any
    path: Path | None = None
    digest: str | None = None
    size: int = 0
    shards: list[Source] = field(default_factory=list)  # a split GGUF's other shards: more model layers


def read_info(path: Path) -> Any:
    from ollamalike.gguf_info import read_gguf_info

    return read_gguf_info(path)


async def gguf_source(
    store: Store, pins: Pins, media: str, *, path: Path | None = None, digest: str | None = None
) -> Source:
    if path is not None:
        check_regular(path, "file")
        info = await asyncio.to_thread(read_info, path)
        return Source(media, info, path=path)
    assert digest is not None
    # Pinned before the existence check: a GC between the check and the manifest cannot take it.
    d = pins.add(digest)
    if not store.has_blob(d):
        pins.fresh.discard(d)  # not ours to clean up if it appears meanwhile
        raise BadRequest(f"blob {d} not found: upload it with POST /api/blobs/{d} first")
    if store.take_received(d):
        # Uploaded for this create and referenced by nothing yet: a failed create drops it again.
        pins.fresh.add(d)
    info = await asyncio.to_thread(read_info, store.blob_path(d))
    return Source(media, info, digest=d, size=store.blob_size(d))


def split_source(store: Store, inp: CheckpointInput) -> Source:
    from ollamalike.gguf_info import read_split_gguf_info

    assert inp.shards is not None
    if inp.files is not None:
        digests = [inp.files[n] for n in inp.shards]
        sources = [Source(MEDIA_MODEL, None, digest=d, size=store.blob_size(d)) for d in digests]
    else:
        assert inp.directory is not None
        sources = [Source(MEDIA_MODEL, None, path=inp.directory / n) for n in inp.shards]
    paths = [s.path if s.path is not None else store.blob_path(s.digest or "") for s in sources]
    first = sources[0]
    first.info, first.shards = read_split_gguf_info(list(paths)), sources[1:]
    return first


async def converted_source(store: Store, prepared: Prepared | MergedSplit, scratch: contextlib.ExitStack) -> Source:
    """The checked checkpoint converted to a scratch GGUF, then a local model file like any other."""
    path = await convert_checkpoint(store, prepared, scratch)
    info = await asyncio.to_thread(read_info, path)
    return Source(MEDIA_MODEL, info, path=path)


async def stored(store: Store, src: Source, pins: Pins) -> tuple[str, int]:
    """The source as a pinned blob: a local file copied in, or an existing blob."""
    if src.path is not None:
        return await asyncio.to_thread(store.add_blob_file, src.path, None, pins)
    assert src.digest is not None
    digest = pins.add(src.digest)
    if not store.has_blob(digest):
        raise BadRequest(f"blob {digest} not found")
    return digest, src.size
