"""Bounded reading of GGUF bytes: only regular files, every length and count checked before use.

``gguf_info`` builds the model facts on top of this. Nothing here trusts the file: a read past the end,
an absurd length or count, or more items than ``MAX_WALKED_ITEMS`` raises ``InvalidGGUF`` (which
``gguf_info`` turns into BadRequest) before any large allocation or long loop.
"""

from __future__ import annotations

import math
import os
import stat
import struct
from typing import Any, BinaryIO

from ollamalike.errors import BadRequest

MAX_STRING_BYTES = 16 * 1024 * 1024  # chat templates are kilobytes; tokens are bytes
MAX_KEY_BYTES = 65535
MAX_ARRAY_ITEMS = 1 << 22  # 4M: the largest vocabularies and merge lists are well below 1M
# Strings and nested arrays are walked one by one; this bounds the whole file's walk (a few seconds at worst).
MAX_WALKED_ITEMS = 1 << 21  # 2M: real vocabularies plus merges stay under 1M
MAX_ARRAY_DEPTH = 3
SHOW_ARRAY_LIMIT = 64  # longer arrays (vocabularies, merges, scores) are shown as null, as Ollama does

_CHUNK = 1 << 20
_STRING, _ARRAY = 8, 9
# GGUFValueType -> struct format (little-endian) for the scalar types.
_SCALARS: dict[int, str] = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_U64 = struct.Struct("<Q")


class InvalidGGUF(Exception):
    """A reason the file is not a usable GGUF file (becomes ``BadRequest("invalid GGUF file: …")``)."""


class Cursor:
    """Sequential little-endian reads from the metadata region, bounded by the file size at every step."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        self.f = f
        self.size = size
        self.pos = 0
        self._buf = b""
        self._buf_start = 0
        self.walked = 0  # items walked one by one so far (see MAX_WALKED_ITEMS)

    def walk(self, count: int) -> None:
        self.walked += count
        if self.walked > MAX_WALKED_ITEMS:
            raise InvalidGGUF(f"metadata holds more than {MAX_WALKED_ITEMS} strings and arrays")

    def read(self, n: int) -> bytes:
        if n < 0 or self.pos + n > self.size:
            raise InvalidGGUF(f"file is truncated (needs {n} bytes at offset {self.pos}, file has {self.size})")
        off = self.pos - self._buf_start
        if off < 0 or off + n > len(self._buf):
            self.f.seek(self.pos)
            self._buf = self.f.read(min(max(n, _CHUNK), self.size - self.pos))
            self._buf_start = self.pos
            off = 0
            if len(self._buf) < n:
                raise InvalidGGUF(f"file is truncated at offset {self.pos + len(self._buf)}")
        self.pos += n
        return self._buf[off : off + n]

    def skip(self, n: int) -> None:
        if n < 0 or self.pos + n > self.size:
            raise InvalidGGUF(f"file is truncated (needs {n} bytes at offset {self.pos}, file has {self.size})")
        self.pos += n

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.read(struct.calcsize(fmt)))[0]

    def strings(self, count: int) -> list[str]:
        """``count`` strings; a fast path slices them straight out of the buffer (vocabularies hold 100k+)."""
        out: list[str] = []
        append = out.append
        unpack_from = _U64.unpack_from
        for _ in range(count):
            buf, off = self._buf, self.pos - self._buf_start
            if off >= 0 and off + 8 <= len(buf):
                (n,) = unpack_from(buf, off)
                end = off + 8 + n
                if n <= MAX_STRING_BYTES and end <= len(buf):
                    append(buf[off + 8 : end].decode("utf-8", errors="replace"))
                    self.pos += 8 + n
                    continue
            append(self.string())
        return out

    def string(self, limit: int = MAX_STRING_BYTES) -> str:
        start = self.pos
        n = self.unpack("<Q")
        if n > limit:
            raise InvalidGGUF(f"string of {n} bytes at offset {start} is longer than allowed ({limit})")
        if self.pos + n > self.size:
            raise InvalidGGUF(f"string of {n} bytes at offset {start} runs past the end of the file")
        return self.read(n).decode("utf-8", errors="replace")


def read_value(cur: Cursor, vtype: int, key: str, keep: bool, depth: int = 0) -> Any:
    """One metadata value. Arrays longer than SHOW_ARRAY_LIMIT are skipped (None) unless ``keep``."""
    fmt = _SCALARS.get(vtype)
    if fmt is not None:
        return _clean_float(cur.unpack(fmt), vtype)
    if vtype == _STRING:
        return cur.string()
    if vtype != _ARRAY:
        raise InvalidGGUF(f"unknown metadata value type {vtype} for key {key!r}")
    if depth >= MAX_ARRAY_DEPTH:
        raise InvalidGGUF(f"arrays nested too deeply in key {key!r}")
    item_type = cur.unpack("<I")
    count = cur.unpack("<Q")
    if count > MAX_ARRAY_ITEMS:
        raise InvalidGGUF(f"array of {count} items in key {key!r} is larger than allowed")
    item_fmt = _SCALARS.get(item_type)
    if item_fmt is not None:
        size = struct.calcsize(item_fmt)
        if cur.pos + count * size > cur.size:
            raise InvalidGGUF(f"array {key!r} runs past the end of the file")
        if count > SHOW_ARRAY_LIMIT and not keep:
            cur.skip(count * size)
            return None
        return [_clean_float(v, item_type) for v in struct.unpack(f"<{count}{item_fmt[1]}", cur.read(count * size))]
    if item_type == _STRING:
        # Each string has at least its 8-byte length: a count the file cannot hold is rejected up front.
        if cur.pos + count * 8 > cur.size:
            raise InvalidGGUF(f"array {key!r} of {count} strings runs past the end of the file")
        cur.walk(count)
        items = cur.strings(count)
        return items if keep or count <= SHOW_ARRAY_LIMIT else None
    if item_type == _ARRAY:
        if cur.pos + count * 12 > cur.size:
            raise InvalidGGUF(f"array {key!r} runs past the end of the file")
        cur.walk(count)
        nested = [read_value(cur, _ARRAY, key, keep, depth + 1) for _ in range(count)]
        return nested if keep or count <= SHOW_ARRAY_LIMIT else None
    raise InvalidGGUF(f"unknown array item type {item_type} for key {key!r}")


def _clean_float(value: Any, vtype: int) -> Any:
    """JSON-safe floats: NaN/inf become None; float32 gets its shortest text (1e-05, not 9.99999974e-06)."""
    if not isinstance(value, float):
        return value
    if not math.isfinite(value):
        return None
    if vtype == 6:
        for digits in range(1, 10):
            short = float(f"{value:.{digits}g}")
            if struct.unpack("<f", struct.pack("<f", short))[0] == value:
                return short
    return value


def open_regular(path: str | os.PathLike[str]) -> tuple[BinaryIO, int]:
    """Open only regular files: stat first (a FIFO would block open), then re-check the opened descriptor."""
    try:
        st = os.stat(path)
    except (OSError, ValueError, TypeError) as e:  # ValueError: a NUL in the path
        reason = e.strerror if isinstance(e, OSError) else str(e)
        raise BadRequest(f"invalid GGUF file: cannot read {str(path)[:200]!r}: {reason}") from None
    if stat.S_ISDIR(st.st_mode):
        raise BadRequest("invalid GGUF file: it is a directory")
    if not stat.S_ISREG(st.st_mode):
        raise BadRequest("invalid GGUF file: not a regular file")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise BadRequest(f"invalid GGUF file: cannot read {str(path)[:200]!r}: {e.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise BadRequest("invalid GGUF file: not a regular file")
    return os.fdopen(fd, "rb", buffering=0), st.st_size
