"""GGUF metadata of the store's blobs: parsed once per blob, cached in the catalog as tagged JSON.

``gguf_info(store, digest)`` is what every reader of a model's GGUF facts calls (resolve, create,
show); ``encode_info``/``decode_info`` are the cache's encoding, which keeps what plain JSON would
lose (tuples, int keys, nested dataclasses) and only ever constructs ``gguf_info``'s dataclasses.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
from typing import TYPE_CHECKING

from ollamalike.jsontypes import JSONValue
from ollamalike.store import Store

if TYPE_CHECKING:
    from ollamalike.gguf_info import GGUFInfo

_INFO_MODULE = "ollamalike.gguf_info"


def encode_info(value: object) -> JSONValue:
    """JSON for a GGUFInfo, keeping what plain JSON would lose (tuples, int keys, nested dataclasses)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        cls = type(value)
        return {
            "__dataclass__": cls.__qualname__,
            "fields": {f.name: encode_info(getattr(value, f.name)) for f in dataclasses.fields(value)},
        }
    if isinstance(value, tuple):
        return {"__tuple__": [encode_info(v) for v in value]}
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return {k: encode_info(v) for k, v in value.items()}
        return {"__pairs__": [[encode_info(k), encode_info(v)] for k, v in value.items()]}
    if isinstance(value, list):
        return [encode_info(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"cannot cache value of type {type(value).__name__}")


def decode_info(value: JSONValue) -> object:
    """The inverse of ``encode_info``; only dataclasses defined in gguf_info are ever constructed."""
    if isinstance(value, list):
        return [decode_info(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "__dataclass__" in value:
        module = importlib.import_module(_INFO_MODULE)
        name, fields = value["__dataclass__"], value["fields"]
        cls: object = getattr(module, name, None) if isinstance(name, str) else None
        if not isinstance(cls, type) or not dataclasses.is_dataclass(cls) or cls.__module__ != _INFO_MODULE:
            raise ValueError(f"unknown cached type {name!r}")
        if not isinstance(fields, dict):
            raise TypeError("cached dataclass fields are not an object")
        return cls(**{k: decode_info(v) for k, v in fields.items()})
    if "__tuple__" in value:
        return tuple(decode_info(v) for v in _array(value["__tuple__"]))
    if "__pairs__" in value:
        return {decode_info(k): decode_info(v) for k, v in (_pair(p) for p in _array(value["__pairs__"]))}
    return {k: decode_info(v) for k, v in value.items()}


def _array(value: JSONValue) -> list[JSONValue]:
    if not isinstance(value, list):
        raise TypeError("cached value is not an array")
    return value


def _pair(value: JSONValue) -> tuple[JSONValue, JSONValue]:
    key, item = _array(value)  # a ValueError when it is not two items
    return key, item


def gguf_info(store: Store, digest: str, splits: list[str] | None = None) -> GGUFInfo:
    """Parsed metadata of a GGUF blob: from the catalog cache, else parsed and cached. With ``splits``
    (the other shards' digests) the shards as one model, not cached: the catalog caches one blob's info."""
    from ollamalike.gguf_info import GGUFInfo, read_gguf_info, read_split_gguf_info

    if splits:
        return read_split_gguf_info([store.blob_path(d) for d in (digest, *splits)])

    cached = store.cached_info(digest)
    if cached is not None:
        try:
            decoded = decode_info(cached)
        except (TypeError, ValueError, KeyError):
            decoded = None  # written by another version: parse again below
        if isinstance(decoded, GGUFInfo):
            return decoded
    info = read_gguf_info(store.blob_path(digest))
    # Not JSON-representable: still correct, only uncached.
    with contextlib.suppress(TypeError):
        store.cache_info(digest, encode_info(info))
    return info
