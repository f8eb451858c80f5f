"""Importing an existing Ollama models directory (``manifests/<host>/<ns>/<model>/<tag>`` + ``blobs/``).

Every name is validated with ``names``, every manifest with the store's validator, and every blob
is hashed before it is registered. Blobs are hard-linked into the store when the filesystem
allows it (no copy; Ollama never rewrites a blob in place), otherwise copied. Names that already
exist here are skipped, never overwritten. Only the store is written to.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

from ollamalike.errors import BadRequest, ModelNotFound, OllamalikeError
from ollamalike.jsontypes import JSONObject
from ollamalike.names import DIGEST_RE, ModelName
from ollamalike.store import Store
from ollamalike.store.manifest import manifest_blobs, parse_manifest

MAX_MANIFEST_BYTES = 4 * 1024 * 1024
# One text for absent, unreadable, not a directory and not a models directory: a client must not learn
# from the answer what exists on this machine (issue 21).
NOT_A_MODELS_DIR = "cannot import {root}: not found, or not a readable Ollama models directory (with a manifests/ folder)"


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):  # ENAMETOOLONG, EACCES, a NUL in the path
        return False
HASH_CHUNK = 4 * 1024 * 1024


def find_manifests(root: Path) -> list[tuple[ModelName, Path]]:
    """Every ``manifests/<host>/<namespace>/<model>/<tag>`` file with a valid name, sorted."""
    base = root / "manifests"
    if not _is_dir(base):
        raise BadRequest(NOT_A_MODELS_DIR.format(root=str(root)[:300]))
    found = []
    for path in sorted(base.glob("*/*/*/*")):
        if path.is_symlink() or not path.is_file():
            continue
        host, namespace, model, tag = path.relative_to(base).parts
        try:
            name = ModelName.parse(f"{host}/{namespace}/{model}:{tag}")
        except BadRequest:
            continue
        found.append((name, path))
    return found


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def link_blob(store: Store, source: str | Path, expected_digest: str | None = None) -> tuple[str, int]:
    """Register a local file as a blob, hard-linked when the filesystem allows, else copied.

    The file is hashed first; a mismatch with ``expected_digest`` raises and writes nothing.
    Returns (digest, size).
    """
    real = Path(os.path.realpath(source))
    st = os.stat(real)
    if not stat.S_ISREG(st.st_mode):
        raise BadRequest(f"not a regular file: {source}")
    if expected_digest is not None and store.has_blob(expected_digest):
        return expected_digest, st.st_size
    digest = _sha256_file(real)
    if expected_digest is not None and digest != expected_digest:
        raise BadRequest(f"{source} is corrupt: expected {expected_digest}, its content hashes to {digest}")
    if store.has_blob(digest):
        return digest, st.st_size
    try:
        os.link(real, store.blob_path(digest))
    except FileExistsError:
        pass
    except OSError:
        # Another filesystem (EXDEV) or links not allowed: copy, verified again while copying.
        store.add_blob_file(real, digest)
    return digest, st.st_size


def _import_blob(store: Store, root: Path, digest: str, size: int) -> str:
    """Register one blob; returns "present" or "added"."""
    if store.has_blob(digest):
        return "present"
    m = DIGEST_RE.match(digest)
    if m is None:
        raise BadRequest(f"invalid digest {digest[:80]!r}")
    source = root / "blobs" / f"sha256-{m.group(1)}"
    try:
        st: os.stat_result | None = os.stat(source, follow_symlinks=False)
    except OSError:
        st = None
    if st is None or not stat.S_ISREG(st.st_mode) or st.st_size != size:
        # Neither its size nor its type is told: only that it is not the blob the manifest names.
        raise BadRequest(f"blob {digest} is missing from {root / 'blobs'} or is not the file its manifest describes")
    link_blob(store, source, digest)
    return "added"


def _import_one(store: Store, root: Path, name: ModelName, path: Path) -> dict[str, int]:
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise BadRequest("manifest is too large")
    body = path.read_bytes()
    manifest = parse_manifest(body)
    counts = {"added": 0, "present": 0}
    with store.pin(d.digest for d in manifest_blobs(manifest)):
        for desc in manifest_blobs(manifest):
            counts[_import_blob(store, root, desc.digest, desc.size)] += 1
        store.put_manifest(name, body)
    return counts


def _exists(store: Store, name: ModelName) -> bool:
    try:
        store.get_manifest(name)
    except ModelNotFound:
        return False
    return True


async def import_models(store: Store, directory: str) -> AsyncIterator[JSONObject]:
    root = Path(directory).expanduser()
    if not _is_dir(root):
        raise BadRequest(NOT_A_MODELS_DIR.format(root=directory[:300]))
    manifests = await asyncio.to_thread(find_manifests, root)
    imported, skipped, failed = 0, 0, []
    for name, path in manifests:
        if _exists(store, name):
            skipped += 1
            yield {"status": f"skipping {name.display}: already exists"}
            continue
        yield {"status": f"importing {name.display}"}
        try:
            counts = await asyncio.to_thread(_import_one, store, root, name, path)
        except OllamalikeError as e:
            failed.append(name.display)
            yield {"status": f"failed {name.display}: {e.message}"}
            continue
        imported += 1
        yield {"status": f"imported {name.display}", **counts}
    if failed:
        raise BadRequest(f"{len(failed)} model(s) could not be imported: {', '.join(failed)}")
    yield {"status": "success", "imported": imported, "skipped": skipped}
