"""The GGUF files a create turns into layers (``Source``: model, projector, adapter, draft), checked
before writing: local files, uploaded blobs, a split GGUF's shards, a converted checkpoint; and
storing one as a pinned blob.

A source is a local file (a Modelfile path on the server's own machine, or a converted checkpoint)
or a blob already in the store (uploaded with /api/blobs, or a model's layer). Reading its GGUF
header here is what lets a create refuse a wrong file before it writes anything. A local file is
copied into the store only when the manifest is written; an uploaded blob is pinned the moment it
is named, before its existence is checked, so a GC cannot take it between.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ollamalike import OLLAMA_VERSION, __version__
from ollamalike.errors import BadRequest, ModelNotFound
from ollamalike.gguf_info import GGUFInfo
from ollamalike.library.create_convert import CheckpointInput, convert_checkpoint
from ollamalike.library.create_paths import check_regular
from ollamalike.library.models import read_layers
from ollamalike.library.projector import is_projector
from ollamalike.library.request import CreateRequest
from ollamalike.modelfile import version_key
from ollamalike.store import Pins, Store
from ollamalike.store.manifest import MEDIA_DRAFT, MEDIA_MODEL

if TYPE_CHECKING:
    from ollamalike.library.convert import Prepared
    from ollamalike.library.convert.split import MergedSplit


@dataclass
class Source:
    """A GGUF that becomes a layer: a local file to copy in, or a blob already in the store."""

    media: str
    info: GGUFInfo
    path: Path | None = None
    digest: str | None = None
    size: int = 0
    shards: list[Source] = field(default_factory=list)  # a split GGUF's other shards: more model layers


def read_info(path: Path) -> GGUFInfo:
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


def gguf_type(info: GGUFInfo | None) -> str:
    """general.type of a GGUF ("model", "adapter", "projector"), "model" when it does not say."""
    value = info.model_info.get("general.type") if info is not None else None
    return str(value or "model")


def check_requires(requires: str | None) -> None:
    """REQUIRES: a model that needs a newer Ollama than the one this daemon is compatible with is
    refused, naming both versions. REQUIRES is written against Ollama's versions (a Modelfile from
    ``ollama show --modelfile`` says ``REQUIRES 0.12.0``), so ollamalike's own number means nothing here."""
    if requires and version_key(requires) > version_key(OLLAMA_VERSION):
        raise BadRequest(f"this model requires Ollama version {requires} or newer, but ollamalike {__version__} "
                         f"is compatible with Ollama {OLLAMA_VERSION}")


async def draft_source(
    store: Store, pins: Pins, request: CreateRequest, path: Path | None, name: str | None
) -> Source | None:
    """The draft model's GGUF: a file (DRAFT path), an uploaded blob (draft_files) or a model's weights
    (DRAFT model name, or the ``draft`` extension field). None when the create names no draft."""
    if request.draft_files:
        if len(request.draft_files) != 1:
            raise BadRequest(f"expected exactly one draft model GGUF, got {len(request.draft_files)} files")
        (digest,) = request.draft_files.values()
        src = await gguf_source(store, pins, MEDIA_DRAFT, digest=digest)
    elif path is not None:
        src = await gguf_source(store, pins, MEDIA_DRAFT, path=path)
    elif name is not None:
        try:
            _, manifest, _ = store.get_manifest(name)
        except ModelNotFound:
            raise BadRequest(
                f"draft model '{name[:100]}' not found: pull or create it first, or name a GGUF file"
            ) from None
        layers = read_layers(store, manifest)
        if layers.model is None:
            raise BadRequest(f"draft model '{name[:100]}' has no model layer")
        src = await gguf_source(store, pins, MEDIA_DRAFT, digest=layers.model)
    else:
        return None
    if gguf_type(src.info) == "adapter":
        raise BadRequest("the draft model must be a language model GGUF, not a LoRA adapter")
    if is_projector(src.info) or src.info.is_embedding_model:
        raise BadRequest(f"the draft model must be a language model GGUF, not a {src.info.architecture} model")
    return src


def split_source(store: Store, inp: CheckpointInput) -> Source:
    from ollamalike.gguf_info import read_split_gguf_info

    assert inp.shards is not None
    if inp.files is not None:
        digests = [inp.files[n] for n in inp.shards]
        paths = [store.blob_path(d) for d in digests]
        info = read_split_gguf_info(paths)  # the shards read as one model: each source carries it
        sources = [Source(MEDIA_MODEL, info, digest=d, size=store.blob_size(d)) for d in digests]
    else:
        assert inp.directory is not None
        paths = [inp.directory / n for n in inp.shards]
        info = read_split_gguf_info(paths)
        sources = [Source(MEDIA_MODEL, info, path=p) for p in paths]
    first = sources[0]
    first.shards = sources[1:]
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
