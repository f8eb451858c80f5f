"""``create`` from a safetensors checkpoint or a split GGUF: uploaded files or local paths, made one GGUF.

Ollama's client uploads a Hugging Face directory file by file (``files`` maps relative names to
blob digests); a legacy Modelfile request may name a local directory. Either way the conversion
(``library.convert``) runs in a worker thread, off the event loop, into a scratch file inside the
store; that file then becomes the model source like a local GGUF (so ``quantize`` takes the usual
path, straight from the converted F16). A bad checkpoint is a 400 before anything is written. The
shards of a split GGUF (``FROM name-00001-of-00003.gguf``) go the same way and are merged.
A PEFT LoRA directory (``ADAPTER ./lora-dir``, or its uploaded files in ``adapters``) is converted
the same way once the base model is known, since it is checked against the base's tensors.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from ollamalike.errors import BadRequest
from ollamalike.store import Pins, Store

if TYPE_CHECKING:
    from ollamalike.library.convert import Prepared
    from ollamalike.library.convert.lora import PreparedLora
    from ollamalike.library.convert.split import MergedSplit

CHECKPOINT_SUFFIXES = (".safetensors",)


@dataclass
class CheckpointInput:
    """A checkpoint to convert: uploaded files (name -> pinned digest) or a local directory."""

    files: dict[str, str] | None = None
    directory: Path | None = None
    shards: list[str] | None = None  # names of a split GGUF's shards, in order (in ``files`` or ``directory``)


def is_checkpoint(files: dict[str, str]) -> bool:
    """Files that are a Hugging Face checkpoint rather than GGUFs (as Ollama decides: safetensors present)."""
    names = [n.lower() for n in files]
    return any(n.endswith(CHECKPOINT_SUFFIXES) for n in names) or (
        "config.json" in names and not any(n.endswith(".gguf") for n in names)
    )


def split_shards(files: dict[str, str]) -> list[str] | None:
    """The shard names when ``files`` are the shards of one split GGUF (all of them must be there)."""
    from ollamalike.names import gguf_shard_names as shard_names

    for name in sorted(files):
        if (shards := shard_names(name)) is not None:
            missing = [n for n in shards if n not in files]
            if missing:
                raise BadRequest(f"split GGUF shard {missing[0]} is missing from 'files'")
            return shards
    return None


T = TypeVar("T")


def shards_by_content(items: list[tuple[T, Path]], where: str, hint: str = "") -> list[T] | None:
    """The items whose files are shards of one split GGUF by their headers (``split.no``/``split.count``),
    in shard order: what ``show --modelfile`` names for a split model, blobs without shard file names.
    None when no file is a shard; a 400 (``where`` names what held them) unless each shard is there once."""
    from ollamalike.gguf_info import split_position

    found = [(pos, i) for i, (_, path) in enumerate(items) if (pos := split_position(path)) is not None]
    if not found:
        return None
    count = found[0][0][1]
    ordered = sorted(found)
    if [pos for pos, _ in ordered] != [(no, count) for no in range(count)]:
        raise BadRequest(f"{where} {len(found)} shard(s) of a split GGUF, not each of its {count} shards once{hint}")
    return [items[i][0] for _, i in ordered]


def split_by_content(store: Store, files: dict[str, str]) -> list[str] | None:
    """The names of uploaded ``files`` that are the shards of one split GGUF, in shard order."""
    present = [(name, store.blob_path(digest)) for name, digest in files.items() if store.has_blob(digest)]
    return shards_by_content(present, "'files' hold")


def local_split(path: Path) -> CheckpointInput | None:
    """A local first shard of a split GGUF, with its siblings in the same directory."""
    from ollamalike.names import gguf_shard_names as shard_names

    shards = shard_names(path.name)
    return CheckpointInput(directory=path.parent, shards=shards) if shards else None


def pin_files(store: Store, pins: Pins, files: dict[str, str], shards: list[str] | None = None) -> CheckpointInput:
    pinned: dict[str, str] = {}
    for name in sorted(files):
        d = pins.add(files[name])
        if not store.has_blob(d):
            pins.fresh.discard(d)
            raise BadRequest(f"blob {d} not found: upload it with POST /api/blobs/{d} first")
        pinned[name] = d
    return CheckpointInput(files=pinned, shards=shards)


def _link_tree(store: Store, files: dict[str, str], root: Path) -> None:
    """The uploaded files under their relative names, as links to their blobs."""
    for name, digest in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(store.blob_path(digest), target)


def _prepare(store: Store, inp: CheckpointInput, scratch: contextlib.ExitStack) -> Prepared | MergedSplit:
    from ollamalike.library.convert import prepare
    from ollamalike.library.convert.split import MergedSplit

    if inp.shards is not None:
        if inp.files is not None:
            return MergedSplit([store.blob_path(inp.files[n]) for n in inp.shards], inp.shards)
        assert inp.directory is not None
        return MergedSplit([inp.directory / n for n in inp.shards])
    if inp.directory is not None:
        return prepare(inp.directory)
    assert inp.files is not None
    root = Path(scratch.enter_context(tempfile.TemporaryDirectory(prefix="ollamalike-convert-")))
    _link_tree(store, inp.files, root)
    return prepare(root, trusted=True)


async def check_checkpoint(store: Store, inp: CheckpointInput, scratch: contextlib.ExitStack) -> Prepared | MergedSplit:
    """Every input check, in a worker thread, before any status is sent (so a bad one is a real 400)."""
    return await asyncio.to_thread(_prepare, store, inp, scratch)


async def convert_checkpoint(store: Store, prepared: Prepared | MergedSplit, scratch: contextlib.ExitStack) -> Path:
    """Write the GGUF in a worker thread into a store scratch file that lives until ``scratch`` closes."""
    out = scratch.enter_context(store.temp_file("convert"))
    await asyncio.to_thread(prepared.write, out)
    return out


def is_lora_files(files: dict[str, str]) -> bool:
    """Uploaded adapter files that are a PEFT directory rather than GGUF adapters."""
    from ollamalike.library.convert.lora import CONFIG_FILE

    return any(n == CONFIG_FILE or n.lower().endswith(CHECKPOINT_SUFFIXES) for n in files)


def _prepare_lora(store: Store, inp: CheckpointInput, base_model: list[Path], scratch: contextlib.ExitStack) -> PreparedLora:
    from ollamalike.library.convert.lora import LoraBase, prepare_lora

    base = LoraBase.from_gguf(*base_model)
    if inp.directory is not None:
        return prepare_lora(inp.directory, base)
    assert inp.files is not None
    root = Path(scratch.enter_context(tempfile.TemporaryDirectory(prefix="ollamalike-lora-")))
    _link_tree(store, inp.files, root)
    return prepare_lora(root, base, trusted=True)


async def check_adapters(
    store: Store, inputs: list[CheckpointInput], base_model: list[Path], scratch: contextlib.ExitStack
) -> list[PreparedLora]:
    """Every PEFT adapter checked against the base model GGUF ``base_model`` (a split's shards), in a worker thread."""
    return [await asyncio.to_thread(_prepare_lora, store, inp, base_model, scratch) for inp in inputs]


async def convert_adapter(store: Store, prepared: PreparedLora, scratch: contextlib.ExitStack) -> Path:
    """The adapter GGUF, in a store scratch file that lives until ``scratch`` closes."""
    out = scratch.enter_context(store.temp_file("convert"))
    await asyncio.to_thread(prepared.write, out)
    return out
