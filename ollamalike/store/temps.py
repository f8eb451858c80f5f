"""Which temp files in ``blobs/`` are strays: their names carry the writer's pid (``.tmp-<pid>-…``).

A writer killed mid-upload, -quantize or -copy leaves its temp file behind; at start-up every temp file
whose owner is no live ollamalike process goes, whatever its age. A name without a pid (written by an
older version) names no owner: it goes once it is over an hour old.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

STALE_TEMP_SECONDS = 3600  # for temp names that carry no owner pid


def remove_stale(root: Path, prefix: str) -> int:
    """Delete the stray temp files (names starting with ``prefix``) in ``root``; returns how many."""
    removed = 0
    cutoff = time.time() - STALE_TEMP_SECONDS
    for entry in os.scandir(root):
        if not entry.name.startswith(prefix) or not entry.is_file(follow_symlinks=False):
            continue
        owner = owner_pid(entry.name, prefix)
        if owner is not None and owner_alive(owner):
            continue
        with contextlib.suppress(FileNotFoundError):
            if owner is None and entry.stat(follow_symlinks=False).st_mtime >= cutoff:
                continue
            os.unlink(entry.path)
            removed += 1
    return removed


def owner_pid(name: str, prefix: str) -> int | None:
    """The pid in ``<prefix><pid>-…``; None for other names."""
    pid, sep, _ = name.removeprefix(prefix).partition("-")
    return int(pid) if sep and pid.isdigit() and len(pid) < 10 else None


def owner_alive(pid: int) -> bool:
    """Whether ``pid`` is this process or a live ollamalike process (the daemon, a CLI, a test's writer)."""
    if pid == os.getpid():
        return True
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # another user's process: not one of ours
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
        with open(f"/proc/{pid}/stat", "rb") as f:
            zombie = f.read().rsplit(b")", 1)[-1].split()[:1] == [b"Z"]
    except OSError:
        return True  # no /proc to ask: a live pid is given the benefit of the doubt
    # A reused pid belongs to some other program: its temp file is a dead writer's.
    return not zombie and b"ollamalike" in cmdline
