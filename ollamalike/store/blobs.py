"""Content-addressed blob files: ``blobs/sha256-<hex>``, never visible half-written.

Every write goes to a temporary file in the same directory while it is hashed, is flushed and
fsynced, has its digest checked, and only then is renamed into place (``os.replace`` is atomic on
one filesystem). Temp names start with ``.tmp-`` and partial downloads end in ``-partial``, so
neither ever looks like a blob. Digests are validated with ``names.parse_digest`` before any path
is built from them.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import stat
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from ollamalike.errors import BadRequest, NotFound, PayloadTooLarge, RegistryError
from ollamalike.names import parse_digest
from ollamalike.store import temps

CHUNK = 1 << 20
IOV_MAX = 512  # buffers per pwritev call; POSIX guarantees at least 16, Linux allows 1024
TMP_PREFIX = ".tmp-"
PARTIAL_SUFFIX = "-partial"

# Called with a blob's digest as soon as it is known, before the blob is checked for or renamed
# into place: the store pins it there, so a concurrent GC cannot delete it before it is referenced.
Claim = Callable[[str], object]


def file_name(digest: str) -> str:
    """``sha256-<hex>`` for a validated digest (``sha256:`` or ``sha256-`` accepted)."""
    return parse_digest(digest).replace(":", "-", 1)


def fsync_dir(path: Path) -> None:
    """Make a rename durable: the directory entry must reach the disk too."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _open_regular(source: Path) -> BinaryIO:
    """Open a regular file for reading; anything else is a BadRequest, and nothing blocks.

    stat first, so devices and FIFOs are never opened; O_NONBLOCK and a second (fstat) check cover
    a file swapped for a FIFO in between.
    """
    try:
        st = os.stat(source)
        if not stat.S_ISREG(st.st_mode):
            raise BadRequest(f"not a regular file: {source}")
        fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise BadRequest(f"file not found: {source}") from None
    except OSError as e:
        raise BadRequest(f"cannot read {source}: {e.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise BadRequest(f"not a regular file: {source}")
    return os.fdopen(fd, "rb")


def _read(src: BinaryIO, source: Path) -> bytes:
    """A read error is the source's problem (400); write errors in the store are not (they propagate)."""
    try:
        return src.read(CHUNK)
    except OSError as e:
        raise BadRequest(f"cannot read {source}: {e.strerror}") from None


def _not_regular(digest: str) -> NotFound:
    return NotFound(f"blob {parse_digest(digest)} is not a regular file in the store (a symlink?): treated as missing")


class BlobDir:
    """The ``blobs/`` directory. Knows files and digests; nothing about manifests or names.

    Only regular files are blobs: a symlink (or anything else) planted under a blob's name is
    never followed, and counts as missing (``lstat``, ``O_NOFOLLOW``).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return self.root / file_name(digest)

    def _lstat(self, digest: str) -> os.stat_result | None:
        try:
            return os.lstat(self.path(digest))
        except FileNotFoundError:
            return None

    def checked_path(self, digest: str) -> Path:
        """The blob's path for a reader: a non-regular file there raises NotFound; an absent one is returned."""
        st = self._lstat(digest)
        if st is not None and not stat.S_ISREG(st.st_mode):
            raise _not_regular(digest)
        return self.path(digest)

    def has(self, digest: str) -> bool:
        st = self._lstat(digest)
        return st is not None and stat.S_ISREG(st.st_mode)

    def size(self, digest: str) -> int:
        st = self._lstat(digest)
        if st is None:
            raise NotFound(f"blob {parse_digest(digest)} not found")
        if not stat.S_ISREG(st.st_mode):
            raise _not_regular(digest)
        return st.st_size

    def read(self, digest: str) -> bytes:
        try:
            fd = os.open(self.path(digest), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise NotFound(f"blob {parse_digest(digest)} not found") from None
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise _not_regular(digest) from None
            raise
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise _not_regular(digest)
            return f.read()

    def digests(self) -> list[str]:
        """Every complete blob; temp and partial files are not blobs."""
        out = []
        for entry in os.scandir(self.root):
            name = entry.name
            if name.startswith("sha256-") and len(name) == 7 + 64 and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(BadRequest):
                    out.append(parse_digest(name))
        return sorted(out)

    def remove(self, digest: str) -> bool:
        try:
            self.path(digest).unlink()
        except FileNotFoundError:
            return False
        return True

    # --- writing -------------------------------------------------------------------------

    def _open_temp(self) -> tuple[int, Path]:
        # The writer's pid is in the name: start-up removes the temp files of writers no longer alive.
        fd, name = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{os.getpid()}-", dir=self.root)
        return fd, Path(name)

    def _commit(self, tmp: Path, digest: str) -> None:
        """Move a verified temp file into place; identical content already there wins."""
        if self.has(digest):
            tmp.unlink(missing_ok=True)
            return
        target = self.path(digest)  # absent, or a planted symlink that the rename replaces
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
        fsync_dir(self.root)

    def _own_blob_digest(self, source: Path) -> str | None:
        try:
            resolved = source.resolve()
        except (OSError, RuntimeError):
            return None
        if resolved.parent != self.root.resolve():
            return None
        try:
            return parse_digest(resolved.name)
        except BadRequest:
            return None

    def _sync_and_commit(self, tmp: Path, digest: str) -> None:
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self._commit(tmp, digest)

    def add_bytes(self, data: bytes, expected_digest: str | None = None, claim: Claim | None = None) -> tuple[str, int]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if expected_digest is not None and parse_digest(expected_digest) != digest:
            raise BadRequest(f"digest mismatch: expected {parse_digest(expected_digest)}, got {digest}")
        if claim is not None:
            claim(digest)
        if self.has(digest):
            return digest, len(data)
        fd, tmp = self._open_temp()
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            self._commit(tmp, digest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return digest, len(data)

    def add_file(self, source: Path, expected_digest: str | None = None, claim: Claim | None = None) -> tuple[str, int]:
        """Copy a local regular file in while hashing it. Directories, devices, FIFOs are refused."""
        expected = parse_digest(expected_digest) if expected_digest is not None else None
        if expected is None:
            # One of our own blobs (a Modelfile from ``show`` names them): its name is its verified
            # digest, so a multi-gigabyte model is not copied just to find it is already here.
            expected = self._own_blob_digest(source)
        src = _open_regular(source)
        with src:
            if expected is not None:
                if claim is not None:
                    claim(expected)
                if self.has(expected):
                    return expected, self.size(expected)
            fd, tmp = self._open_temp()
            try:
                h = hashlib.sha256()
                size = 0
                with os.fdopen(fd, "wb") as out:
                    while chunk := _read(src, source):
                        h.update(chunk)
                        out.write(chunk)
                        size += len(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                digest = "sha256:" + h.hexdigest()
                if expected is not None and digest != expected:
                    raise BadRequest(f"digest mismatch: expected {expected}, got {digest}")
                if claim is not None:
                    claim(digest)
                self._commit(tmp, digest)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        return digest, size

    async def add_stream(
        self,
        chunks: AsyncIterator[bytes],
        expected_digest: str,
        max_size: int | None = None,
        claim: Claim | None = None,
    ) -> tuple[str, int]:
        """An HTTP upload: hashed while written; wrong digest or too big leaves nothing behind."""
        expected = parse_digest(expected_digest)
        fd, tmp = self._open_temp()
        try:
            h = hashlib.sha256()
            size = 0
            with os.fdopen(fd, "wb") as out:
                async for chunk in chunks:
                    size += len(chunk)
                    if max_size is not None and size > max_size:
                        raise PayloadTooLarge(f"blob larger than the limit of {max_size} bytes")
                    h.update(chunk)
                    out.write(chunk)
            digest = "sha256:" + h.hexdigest()
            if digest != expected:
                raise BadRequest(f"digest mismatch: expected {expected}, got {digest}")
            if claim is not None:
                claim(digest)
            # fsync of a large file can take seconds: not on the event loop. The thread opens the
            # file itself, so a cancellation here cannot close a descriptor it is still using.
            await asyncio.to_thread(self._sync_and_commit, tmp, digest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return digest, size

    @contextlib.contextmanager
    def temp_file(self, hint: str = "work") -> Iterator[Path]:
        """A fresh path in ``blobs/`` for a tool to write (a quantizer); gone at exit unless adopted."""
        if not hint.isalnum():
            raise ValueError(f"invalid temp file hint {hint!r}")
        fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{os.getpid()}-{hint}-", dir=self.root)
        os.close(fd)
        path = Path(tmp)
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)

    def adopt(self, tmp: Path, claim: Claim | None = None) -> tuple[str, int]:
        """Turn a finished temp file from ``temp_file`` into a blob: hashed and renamed, not copied."""
        if tmp.parent != self.root or not tmp.name.startswith(TMP_PREFIX):
            raise ValueError(f"{tmp} is not a temp file of this store")
        h = hashlib.sha256()
        size = 0
        with open(tmp, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
                size += len(chunk)
            os.fsync(f.fileno())
        digest = "sha256:" + h.hexdigest()
        if claim is not None:
            claim(digest)
        self._commit(tmp, digest)
        return digest, size

    def partial(self, digest: str, size: int) -> PartialBlob:
        return PartialBlob(self, parse_digest(digest), size)

    def remove_stale_temps(self) -> int:
        """Temp files no live process of ours owns (see ``store.temps``); partials are kept: they resume."""
        return temps.remove_stale(self.root, TMP_PREFIX)


class PartialBlob:
    """A resumable download: ``sha256-<hex>-partial`` survives process death and accepts ranged writes.

    Writers may fill disjoint ranges in parallel (each ``write_at`` opens its own descriptor).
    ``ranges`` records what was written in this process; after a restart ``offset`` (the file's
    length) is what a sequential downloader resumes from.
    """

    def __init__(self, blobs: BlobDir, digest: str, size: int) -> None:
        if size < 0:
            raise BadRequest(f"invalid blob size {size}")
        self.blobs = blobs
        self.digest = digest
        self.size = size
        self.path = blobs.root / (file_name(digest) + PARTIAL_SUFFIX)
        self.ranges: list[tuple[int, int]] = []
        if not self.path.exists():
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
            os.close(fd)
        elif self.path.stat().st_size > size:
            # Longer than the blob can be: not ours to resume from.
            os.truncate(self.path, 0)

    @property
    def offset(self) -> int:
        """Bytes present on disk from the start (a sequential download resumes here)."""
        try:
            return min(self.path.stat().st_size, self.size)
        except FileNotFoundError:
            return 0

    def write_at(self, offset: int, data: bytes) -> None:
        self.write_chunks_at(offset, [data])

    def write_chunks_at(self, offset: int, chunks: Sequence[bytes | memoryview]) -> None:
        """Write ``chunks`` back to back from ``offset`` in one ``pwritev`` (no joining copy)."""
        size = sum(len(c) for c in chunks)
        if offset < 0 or offset + size > self.size:
            raise RegistryError(
                f"write of {size} bytes at {offset} is outside blob {self.digest} of {self.size} bytes"
            )
        fd = os.open(self.path, os.O_WRONLY)
        try:
            views = [memoryview(c) for c in chunks if c]
            pos = offset
            while views:
                n = os.pwritev(fd, views[:IOV_MAX], pos)
                pos += n
                # A short write stops anywhere, even inside a chunk: drop what went out.
                while views and n >= len(views[0]):
                    n -= len(views[0])
                    views.pop(0)
                if n:
                    views[0] = views[0][n:]
        finally:
            os.close(fd)
        self.ranges.append((offset, offset + size))

    def flush(self) -> None:
        """Push what was written so far to disk, so ``finish()``'s fsync has little left to do."""
        fd = os.open(self.path, os.O_WRONLY)
        try:
            os.fdatasync(fd)
        finally:
            os.close(fd)

    def finish(self, hashed: str | None = None) -> str:
        """Re-hash the whole file, verify, rename into place. A mismatch deletes the partial.

        ``hashed`` is the digest of exactly the bytes the caller wrote, computed as it wrote them
        (the registry's downloader hashes in order while parts arrive); it saves a second full read.
        """
        with open(self.path, "rb") as f:
            os.fsync(f.fileno())
            if hashed is not None:
                size = os.fstat(f.fileno()).st_size
                digest = parse_digest(hashed)
            else:
                h = hashlib.sha256()
                size = 0
                while chunk := f.read(CHUNK):
                    h.update(chunk)
                    size += len(chunk)
                digest = "sha256:" + h.hexdigest()
        if digest != self.digest or size != self.size:
            self.discard()
            raise RegistryError(f"digest mismatch for {self.digest}: downloaded {size} bytes hashing to {digest}")
        self.blobs._commit(self.path, digest)
        return digest

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
