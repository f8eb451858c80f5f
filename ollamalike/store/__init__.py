"""The model store: content-addressed blobs, Ollama manifests and the SQLite catalog of tags.

``Store`` is the only code that builds paths under the models directory. Tags live in the
catalog; a manifest is itself a blob (its digest is the sha256 of its bytes, as in OCI). Moving a
tag and changing the references it implies happen in one transaction, and garbage collection
only deletes blobs no tagged manifest references. A lock serialises catalog use and GC, and
``pin`` lets a create in progress protect blobs it has written but not yet referenced.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ollamalike.errors import BadRequest, ModelNotFound, NotFound
from ollamalike.jsontypes import JSONObject, JSONValue
from ollamalike.names import ModelName, parse_digest
from ollamalike.store.blobs import BlobDir, PartialBlob
from ollamalike.store.catalog import Catalog, TagRow
from ollamalike.store.manifest import manifest_blobs, parse_manifest

__all__ = ["Store", "Pins", "TagRow", "PartialBlob", "now_rfc3339", "local_rfc3339", "details_from_config"]

MAX_RECEIVED = 4096  # uploads remembered for "drop it if its create fails"
# A config blob is a few hundred bytes of JSON; a huge one is hostile and must not be read into memory.
MAX_CONFIG_BYTES = 1 << 20


def now_rfc3339() -> str:
    """UTC, as stored in the catalog: strings sort in time order even across DST changes."""
    return datetime.now(timezone.utc).isoformat()


def local_rfc3339(text: str) -> str:
    """A stored time in local time with its offset, as Ollama reports modified_at."""
    try:
        return datetime.fromisoformat(text).astimezone().isoformat()
    except ValueError:
        return text


def _name(name: ModelName | str) -> ModelName:
    return name if isinstance(name, ModelName) else ModelName.parse(name)


def details_from_config(config: JSONObject, parent_model: str = "") -> JSONObject:
    """The ``details`` object of /api/tags and /api/show, from a manifest's config blob (the catalog
    fills in ``parent_model`` per tag)."""
    family = config.get("model_family") or ""
    families = config.get("model_families")
    if not isinstance(families, list):
        families = [family] if family else None
    return {
        "parent_model": parent_model,
        "format": config.get("model_format") or "gguf",
        "family": family,
        "families": families or None,
        "parameter_size": config.get("model_type") or "",
        "quantization_level": config.get("file_type") or "",
    }


class Pins:
    """Blobs a create in progress has written or chosen but not yet referenced from a tag."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.digests: set[str] = set()
        # Pinned while absent: blobs this holder is about to create (what a failure must clean up).
        self.fresh: set[str] = set()

    def add(self, digest: str) -> str:
        d = parse_digest(digest)
        if d not in self.digests:
            with self._store._lock:
                self._store._pins[d] += 1
                if not self._store.blobs.has(d):
                    self.fresh.add(d)
            self.digests.add(d)
        return d

    def release(self) -> None:
        with self._store._lock:
            for d in self.digests:
                self._store._pins[d] -= 1
                if self._store._pins[d] <= 0:
                    del self._store._pins[d]
        self.digests.clear()


class Store:
    def __init__(self, models_dir: Path | str) -> None:
        self.root = Path(models_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        self.blobs = BlobDir(self.root / "blobs")
        self.catalog = Catalog(self.root / "catalog.db")
        self._lock = threading.RLock()
        self._pins: Counter[str] = Counter()
        # Blobs received by upload and not yet named by a create (insertion-ordered, bounded).
        self._received: dict[str, None] = {}

    def close(self) -> None:
        with self._lock:
            self.catalog.close()

    # --- blobs ---------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        """Where a blob is (or will be); a symlink or other non-regular file there raises NotFound."""
        return self.blobs.checked_path(digest)

    def has_blob(self, digest: str) -> bool:
        return self.blobs.has(digest)

    def blob_size(self, digest: str) -> int:
        return self.blobs.size(digest)

    def read_blob(self, digest: str) -> bytes:
        return self.blobs.read(digest)

    # ``pins``: a create in progress passes its Pins so the blob is protected from GC from the
    # moment its digest is known, before it becomes visible.

    def add_blob_file(
        self, path: Path | str, expected_digest: str | None = None, pins: Pins | None = None
    ) -> tuple[str, int]:
        return self.blobs.add_file(Path(path), expected_digest, pins.add if pins else None)

    def add_blob_bytes(
        self, data: bytes, expected_digest: str | None = None, pins: Pins | None = None
    ) -> tuple[str, int]:
        return self.blobs.add_bytes(data, expected_digest, pins.add if pins else None)

    async def add_blob_stream(
        self,
        chunks: AsyncIterator[bytes],
        expected_digest: str,
        max_size: int | None = None,
        pins: Pins | None = None,
    ) -> tuple[str, int]:
        existed = self.has_blob(expected_digest)
        result = await self.blobs.add_stream(chunks, expected_digest, max_size, pins.add if pins else None)
        if not existed:
            with self._lock:
                self._received[result[0]] = None
                while len(self._received) > MAX_RECEIVED:
                    self._received.pop(next(iter(self._received)))
        return result

    def take_received(self, digest: str) -> bool:
        """Whether ``digest`` was uploaded (``add_blob_stream``) by this process and not yet claimed by a
        create: such a blob belongs to the create that names it, and a failure of that create removes it."""
        with self._lock:
            d = parse_digest(digest)
            if d in self._received:
                del self._received[d]
                return not self.catalog.is_referenced(d)
            return False

    def partial(self, digest: str, size: int) -> PartialBlob:
        return self.blobs.partial(digest, size)

    def temp_file(self, hint: str = "work") -> contextlib.AbstractContextManager[Path]:
        """A scratch path inside the store for tools that write a file (the quantizer); see ``adopt``."""
        return self.blobs.temp_file(hint)

    def adopt(self, path: Path, pins: Pins | None = None) -> tuple[str, int]:
        """Make a finished ``temp_file`` a blob without copying it."""
        return self.blobs.adopt(path, pins.add if pins else None)

    @contextlib.contextmanager
    def pin(self, digests: Iterable[str] = ()) -> Iterator[Pins]:
        """Protect blobs from GC until the block ends; ``pins.add(d)`` protects more."""
        pins = Pins(self)
        try:
            for d in digests:
                pins.add(d)
            yield pins
        finally:
            pins.release()

    # --- manifests and tags --------------------------------------------------------------

    def put_manifest(self, name: ModelName | str, manifest_bytes: bytes, parent_model: str = "") -> str:
        """Store manifest bytes as received and point the tag at them; returns the manifest digest.

        Every blob the manifest names must already be present. The tag move and the references
        change in one transaction; blobs the previous manifest alone used are then collected.
        """
        model = _name(name)
        obj = parse_manifest(manifest_bytes)
        descs = manifest_blobs(obj)
        for d in descs:
            if not self.has_blob(d.digest):
                raise BadRequest(f"manifest references missing blob {d.digest}")
            actual = self.blob_size(d.digest)
            if actual != d.size:
                raise BadRequest(f"blob {d.digest} is {actual} bytes, manifest says {d.size}")
        if descs[0].size > MAX_CONFIG_BYTES:
            raise BadRequest(f"config blob {descs[0].digest} is {descs[0].size} bytes; configs are small JSON")
        try:
            config = json.loads(self.read_blob(descs[0].digest))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise BadRequest(f"config blob {descs[0].digest} is not JSON") from None
        if not isinstance(config, dict):
            raise BadRequest(f"config blob {descs[0].digest} is not a JSON object")
        details = details_from_config(config)
        size = sum(d.size for d in descs)
        with self._lock:
            existed = False
            digest = ""
            try:
                digest = "sha256:" + hashlib.sha256(manifest_bytes).hexdigest()
                existed = self.has_blob(digest)
                self.add_blob_bytes(manifest_bytes, digest)
                with self.catalog.transaction():
                    self.catalog.add_manifest(digest, size, descs[0].digest, details, [d.digest for d in descs])
                    old = self._move_tag(model, digest, parent_model)
                    candidates = self._release(old, digest)
            except BaseException:
                if digest and not existed:
                    self.collect([digest])
                raise
            self.collect(candidates)
        return digest

    def _move_tag(self, model: ModelName, digest: str, parent_model: str) -> str | None:
        return self.catalog.set_tag(model.key(), str(model), digest, now_rfc3339(), parent_model)

    def _release(self, old: str | None, new: str | None) -> list[str]:
        if old is None or old == new:
            return []
        return self.catalog.drop_manifest_if_untagged(old)

    def collect(self, candidates: Iterable[str]) -> list[str]:
        """Delete the given blobs that nothing references and nobody has pinned."""
        removed: list[str] = []
        wanted = sorted(set(candidates))
        if not wanted:
            return removed
        with self._lock:
            ollama_refs = self._ollama_refs()
            for d in wanted:
                if self._pins.get(d) or d in ollama_refs or self.catalog.is_referenced(d):
                    continue
                if self.blobs.remove(d):
                    removed.append(d)
                self.catalog.drop_info(d)
        return removed

    def _ollama_refs(self) -> set[str]:
        """Blobs an Ollama ``manifests/`` tree in the same directory references (OLLAMA_MODELS pointed
        here): never ours to delete. Unreadable or foreign files there are skipped, never trusted."""
        tree = self.root / "manifests"
        refs: set[str] = set()
        if not tree.is_dir():
            return refs
        for dirpath, _dirs, files in os.walk(tree):
            for fname in files:
                path = Path(dirpath) / fname
                try:
                    if not path.is_file() or path.is_symlink() or path.stat().st_size > 1 << 20:
                        continue
                    data = path.read_bytes()
                    descs = manifest_blobs(parse_manifest(data))
                except (OSError, BadRequest):
                    continue
                refs.add("sha256:" + hashlib.sha256(data).hexdigest())
                refs.update(d.digest for d in descs)
        return refs

    def get_manifest(self, name: ModelName | str) -> tuple[str, dict[str, Any], bytes]:
        model = _name(name)
        with self._lock:
            digest = self.catalog.tag_digest(model.key())
        if digest is None:
            raise ModelNotFound(name if isinstance(name, str) else model.display)
        try:
            data = self.read_blob(digest)
        except NotFound:
            raise ModelNotFound(name if isinstance(name, str) else model.display) from None
        return digest, json.loads(data), data

    def tag_info(self, name: ModelName | str) -> TagRow:
        model = _name(name)
        with self._lock:
            row = self.catalog.tag(model.key())
        if row is None:
            raise ModelNotFound(name if isinstance(name, str) else model.spelled or model.display)
        return row

    def list_tags(self) -> list[TagRow]:
        """Newest first."""
        with self._lock:
            return self.catalog.tags()

    def copy_tag(self, src: ModelName | str, dst: ModelName | str) -> str:
        source, target = _name(src), _name(dst)
        with self._lock:
            with self.catalog.transaction():
                row = self.catalog.tag(source.key())
                if row is None:
                    raise ModelNotFound(src if isinstance(src, str) else source.display)
                old = self._move_tag(target, row.digest, row.parent_model)
                candidates = self._release(old, row.digest)
            self.collect(candidates)
        return row.digest

    def delete_tag(self, name: ModelName | str) -> list[str]:
        """Remove a tag, then the blobs nothing references any more; returns the removed blobs."""
        model = _name(name)
        with self._lock:
            with self.catalog.transaction():
                old = self.catalog.remove_tag(model.key())
                if old is None:
                    raise ModelNotFound(name if isinstance(name, str) else model.display)
                candidates = self._release(old, None)
            return self.collect(candidates)

    def gc(self) -> list[str]:
        """Full sweep: every unreferenced, unpinned blob, and the temp files of writers no longer alive."""
        with self._lock:
            referenced = self.catalog.referenced_blobs()
            removed = self.collect(d for d in self.blobs.digests() if d not in referenced)
        self.remove_stale_temps()
        return removed

    def remove_stale_temps(self) -> int:
        """Temp files no live process of ours owns (``blobs.remove_stale_temps``); partial downloads stay."""
        return self.blobs.remove_stale_temps()

    # --- caches and pull state -----------------------------------------------------------

    def cached_info(self, digest: str) -> JSONValue:
        """The GGUF metadata cached for a blob (``library.info_cache.encode_info``'s JSON), None when there is none."""
        with self._lock:
            return self.catalog.get_info(parse_digest(digest))

    def cache_info(self, digest: str, info: JSONValue) -> None:
        """Remember parsed GGUF metadata for a blob that is referenced (GC drops it with the blob)."""
        d = parse_digest(digest)
        with self._lock:
            if self.catalog.is_referenced(d):
                self.catalog.put_info(d, info)

    def record_pull(self, key: str, state: JSONObject) -> None:
        with self._lock:
            self.catalog.record_pull(key, state, now_rfc3339())

    def get_pull(self, key: str) -> JSONObject | None:
        with self._lock:
            return self.catalog.get_pull(key)

    def clear_pull(self, key: str) -> None:
        with self._lock:
            self.catalog.clear_pull(key)

    def pulls(self) -> dict[str, JSONObject]:
        with self._lock:
            return self.catalog.pulls()
