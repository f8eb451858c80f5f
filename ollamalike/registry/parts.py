"""Parts of a blob download and its in-order hash: planning, resume state, ``OrderedHasher``.

A large blob is split into parts of at least ``MIN_PART`` bytes (at most a given number of them).
How far each part got is saved as ``{"size": N, "parts": [[start, end, done], ...]}``;
``restore_parts`` accepts a saved state only when it describes exactly this blob.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ollamalike.errors import RegistryError
from ollamalike.jsontypes import JSONObject, JSONValue

MIN_PART = 16 * 1024 * 1024
MAX_CHUNKS = 1024
READ_BACK_CHUNK = 1024 * 1024  # bytes per read when hashing back from the partial file
PENDING_LIMIT = 128 * 1024 * 1024  # bytes ahead of the hash frontier kept in memory per blob


class IntegrityError(RegistryError):
    """The server sent something other than the blob: the partial file is worthless."""


class RangeIgnored(Exception):
    """The server answered a Range request with the whole blob."""

    def __init__(self) -> None:
        super().__init__("the registry answered a Range request with the whole blob")


class PartState(Protocol):
    """Where part progress of interrupted pulls is kept (the store's catalog)."""

    def get(self, digest: str) -> JSONObject | None: ...

    def set(self, digest: str, state: JSONObject) -> None: ...

    def clear(self, digest: str) -> None: ...


@dataclass
class Part:
    start: int
    end: int  # exclusive
    done: int = 0

    @property
    def remaining(self) -> int:
        return self.end - self.start - self.done


def plan_parts(size: int, chunks: int = MAX_CHUNKS) -> list[Part]:
    step = max(MIN_PART, -(-size // chunks))
    parts = [Part(start, min(size, start + step)) for start in range(0, size, step)]
    return parts or [Part(0, size)]


def snapshot(size: int, parts: Sequence[Part]) -> JSONObject:
    """The saved state of a blob's parts (what ``restore_parts`` reads back)."""
    saved: list[JSONValue] = [[p.start, p.end, p.done] for p in parts]
    return {"size": size, "parts": saved}


def restore_parts(state: JSONValue, size: int) -> list[Part] | None:
    """Parts from a saved state, or None when it does not describe this blob sanely."""
    if not isinstance(state, dict) or state.get("size") != size:
        return None
    items = state.get("parts")
    if not isinstance(items, list):
        return None
    parts: list[Part] = []
    pos = 0
    for item in items:
        if not (isinstance(item, list) and len(item) == 3):
            return None
        start, end, done = item
        if not (isinstance(start, int) and isinstance(end, int) and isinstance(done, int)):
            return None
        if start != pos or end <= start or not 0 <= done <= end - start:
            return None
        parts.append(Part(start, end, done))
        pos = end
    return parts if pos == size else None


class OrderedHasher:
    """sha256 of the blob in byte order while its parts arrive out of order.

    Called only from the blob's one writer thread, right after each write, so it needs no lock and
    the event loop never waits on hashing. Bytes landing at the frontier are hashed straight from
    memory; a run that landed ahead is kept in memory (up to ``PENDING_LIMIT``) or, beyond that,
    read back from the partial file (usually from the page cache) once the frontier reaches it.
    The download thus ends with its digest known, and the store need not read the file again.
    """

    def __init__(self, path: Path, parts: list[Part]) -> None:
        self.path = path
        self.reset(parts)

    def reset(self, parts: list[Part]) -> None:
        """Start over; bytes already in the file (a resumed pull's ``done``) are hashed from it."""
        self.sha = hashlib.sha256()
        self.frontier = 0
        # Written runs ahead of the frontier, keyed by offset: their bytes, or their length when
        # they must be read back from the file. Writes within a part chain offset to offset.
        self.ahead: dict[int, list[bytes | memoryview] | int] = {p.start: p.done for p in parts if p.done}
        self.ahead_bytes = 0
        self._catch_up()

    def written(self, pos: int, chunks: Sequence[bytes | memoryview], copy: bool = False) -> None:
        """``chunks`` were just written back to back from ``pos``.

        ``copy=True``: the chunks' memory is reused after this call, so a run that landed ahead of
        the frontier is kept as a copy (still cheaper than reading it back from the file).
        """
        size = sum(len(c) for c in chunks)
        if pos == self.frontier:
            for c in chunks:
                self.sha.update(c)
            self.frontier += size
            self._catch_up()
        elif pos > self.frontier:
            if self.ahead_bytes + size <= PENDING_LIMIT:
                self.ahead[pos] = [bytes(c) for c in chunks] if copy else list(chunks)
                self.ahead_bytes += size
            else:
                self.ahead[pos] = size

    def _catch_up(self) -> None:
        while (item := self.ahead.pop(self.frontier, None)) is not None:
            if isinstance(item, int):
                self._hash_file(self.frontier, self.frontier + item)
                self.frontier += item
                continue
            for c in item:
                self.sha.update(c)
                self.frontier += len(c)
                self.ahead_bytes -= len(c)

    def _hash_file(self, start: int, end: int) -> None:
        with open(self.path, "rb") as f:
            f.seek(start)
            left = end - start
            while left > 0:
                chunk = f.read(min(READ_BACK_CHUNK, left))
                if not chunk:
                    raise IntegrityError("partial file is shorter than the bytes written to it")
                self.sha.update(chunk)
                left -= len(chunk)

    def digest(self, size: int) -> str | None:
        return "sha256:" + self.sha.hexdigest() if self.frontier == size else None
