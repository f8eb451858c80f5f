"""The pool of render worker processes that run GGUF Jinja templates, and their wire format.

A chat template comes from a model file, so it is untrusted code for a sandbox. Rendering it in a
thread of the daemon cannot be bounded: one C-level operation (``'a' * n``, ``join``, ``~``,
``'{:>999999999}'.format``, ``center``) holds the GIL for as long as it runs and a thread cannot be
killed, and what it allocated stays in the daemon (glibc keeps freed heap). So templates render in
worker processes (``ollamalike.template.jinja_worker``), each under an address-space limit
(``RLIMIT_AS``) set per render and a time limit it enforces on itself (``SIGALRM``); the daemon
kills a worker that has not answered by the deadline. A worker that hit a limit, or grew, exits and
is replaced, so its memory goes back to the system. Workers are reused, so a normal render costs a
pipe round trip, not a process start.

Frames are an 8-byte big-endian length and a payload. A request is a pickle (daemon to worker only:
the worker trusts its parent); a reply is one kind byte, one byte saying whether the worker stays,
the worker's peak RSS in kB (8 bytes) and UTF-8 text, so the daemon never unpickles anything a template could have influenced.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from ollamalike.errors import BadRequest

POOL_SIZE = 2  # renders at once (a normal one takes about a millisecond); more wait for a free worker
START_TIMEOUT = 60.0  # a fresh interpreter importing jinja2 on a loaded machine
KILL_GRACE = 0.5  # past the template's budget before the daemon kills its worker

OK, ERROR = b"o", b"e"  # reply kinds: the prompt, or a ``BadRequest`` message
_LEN = struct.Struct(">Q")
_PEAK = struct.Struct(">Q")


def write_frame(fd: int, payload: bytes) -> None:
    for part in (_LEN.pack(len(payload)), payload):  # not joined: a prompt may be tens of MB
        data = memoryview(part)
        while data:
            data = data[os.write(fd, data):]


def read_frame(fd: int, deadline: float | None = None) -> bytes | None:
    """One frame from ``fd``; None at end of file. Raises ``TimeoutError`` past ``deadline``."""
    head = _read_exactly(fd, _LEN.size, deadline)
    if head is None:
        return None
    (length,) = _LEN.unpack(head)
    body = _read_exactly(fd, length, deadline)
    if body is None:
        raise EOFError("render worker closed its pipe mid-frame")
    return body


def _read_exactly(fd: int, n: int, deadline: float | None) -> bytes | None:
    chunks: list[bytes] = []
    got = 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
        try:
            chunk = os.read(fd, min(n - got, 1 << 20))
        except ConnectionResetError:
            chunk = b""  # the worker died with our request unread
        if not chunk:
            if got:
                raise EOFError("render worker closed its pipe mid-frame")
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def encode_reply(kind: bytes, stays: bool, peak_kb: int, text: str) -> bytes:
    # surrogatepass: a template may build a lone surrogate from an escape; it must come back as is.
    return kind + (b"1" if stays else b"0") + _PEAK.pack(peak_kb) + text.encode("utf-8", "surrogatepass")


@dataclass(frozen=True)
class Reply:
    kind: bytes
    stays: bool  # False: the worker exits after this reply (it grew, or hit a limit)
    peak_kb: int  # the worker's peak resident size during this render
    text: str


def decode_reply(payload: bytes) -> Reply:
    kind, stays, peak = payload[:1], payload[1:2], payload[2:2 + _PEAK.size]
    if kind not in (OK, ERROR) or stays not in (b"0", b"1") or len(peak) != _PEAK.size:
        raise RuntimeError("render worker sent a malformed reply")
    text = payload[2 + _PEAK.size:].decode("utf-8", "surrogatepass")
    return Reply(kind, stays == b"1", _PEAK.unpack(peak)[0], text)


def vm_status(pid: int | str, field: str) -> int:
    """A ``/proc/<pid>/status`` size field (``VmHWM``, ``VmRSS``, ``VmSize``) in kB; 0 if unknown."""
    with contextlib.suppress(OSError, ValueError, IndexError), open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class _Worker:
    def __init__(self) -> None:
        # One socket pair, not two pipes: a worker costs the daemon one descriptor.
        ours, theirs = socket.socketpair()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ollamalike.template.jinja_worker", str(os.getpid())],
                stdin=theirs.fileno(), stdout=theirs.fileno(), close_fds=True)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.sock = ours
        self.fd = ours.fileno()
        try:
            ready = read_frame(self.fd, time.monotonic() + START_TIMEOUT)
        except (TimeoutError, EOFError, OSError):
            ready = None
        if ready != b"ready":
            self.kill()
            raise RuntimeError("the chat template worker did not start")

    def call(self, request: bytes, deadline: float) -> Reply:
        write_frame(self.fd, request)
        payload = read_frame(self.fd, deadline)
        if payload is None:
            raise EOFError("render worker exited")
        return decode_reply(payload)

    def peak_kb(self) -> int:
        return vm_status(self.proc.pid, "VmHWM")

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.send_signal(signal.SIGKILL)
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        self.sock.close()

    def alive(self) -> bool:
        return self.proc.poll() is None


class RenderPool:
    """Up to ``size`` renders at once, each in a worker process; workers are kept for the next
    render, and one spare is started ahead while there are fewer than ``size``, so a render seldom
    waits for a process start (after a runaway template's worker is killed, say)."""

    def __init__(self, size: int = POOL_SIZE) -> None:
        self._size = size
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []  # the hottest (most recently used) last
        self._live = 0  # workers started or starting, idle or busy
        self.last_peak_kb = 0  # the last render's worker: its peak RSS and its pid (tests, diagnostics)
        self.last_pid = 0

    def render(self, request: bytes, budget: float) -> str:
        """The prompt the worker rendered; ``BadRequest`` for the template's own failures and limits."""
        with self._slots:
            worker = self._take()
            try:
                try:
                    reply = worker.call(request, time.monotonic() + budget + KILL_GRACE)
                except (BrokenPipeError, ConnectionResetError):
                    # An idle worker that died meanwhile (killed from outside): once more, with a fresh one.
                    self._discard(worker)
                    worker = self._start()
                    reply = worker.call(request, time.monotonic() + budget + KILL_GRACE)
            except TimeoutError:
                self.last_peak_kb = worker.peak_kb()
                self._discard(worker)
                raise BadRequest("chat template: took too long to render") from None
            except EOFError:
                # Died mid-render: its address-space limit or its own alarm ended it.
                self._discard(worker)
                raise BadRequest("chat template: used too much memory or time") from None
            except BaseException:
                self._discard(worker)
                raise
            self.last_peak_kb = reply.peak_kb
            if reply.stays:
                with self._lock:
                    self._idle.append(worker)
            else:
                self._discard(worker)
        if reply.kind == ERROR:
            raise BadRequest(reply.text)
        return reply.text

    def idle_count(self) -> int:
        """Workers started and waiting for a render."""
        with self._lock:
            return len(self._idle)

    def _take(self) -> _Worker:
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.alive():
                    break
                self._live -= 1
                worker.kill()
            else:
                worker = None
        if worker is None:
            worker = self._start()
        self.last_pid = worker.proc.pid
        self._top_up()
        return worker

    def _start(self) -> _Worker:
        with self._lock:
            self._live += 1
        try:
            worker = _Worker()
        except BaseException:
            with self._lock:
                self._live -= 1
            raise
        self.last_pid = worker.proc.pid
        return worker

    def _discard(self, worker: _Worker) -> None:
        worker.kill()
        with self._lock:
            self._live -= 1
        self._top_up()

    def _top_up(self) -> None:
        """Start a spare in the background when none is idle and the pool is not full."""
        with self._lock:
            if self._idle or self._live >= self._size:
                return
            self._live += 1
        threading.Thread(target=self._add_spare, name="jinja-spare", daemon=True).start()

    def _add_spare(self) -> None:
        try:
            worker = _Worker()
        except (RuntimeError, OSError):
            with self._lock:
                self._live -= 1
            return
        with self._lock:
            # At the cold end: a worker that rendered before has the template compiled already.
            self._idle.insert(0, worker)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
            self._live -= len(idle)
        for worker in idle:
            worker.kill()


_POOL: RenderPool | None = None
_POOL_LOCK = threading.Lock()


def pool() -> RenderPool:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = RenderPool()
        return _POOL
