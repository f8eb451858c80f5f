"""Which files on the server's own disk a create may read, and the one answer when it may not.

A Modelfile FROM or ADAPTER that names a path is honoured only for a client on the server's machine
(``Access``, decided by the handler); for anyone else files come through ``/api/blobs``. The answers
never tell whether a path exists, or what it is (issue 21).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ollamalike.errors import BadRequest

_PATH_SUFFIXES = (".gguf", ".bin", ".safetensors")


def check_regular(path: Path, what: str) -> None:
    """One text for absent, unreadable and non-regular: the answer must not tell which (issue 21)."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):  # ValueError: a NUL in the path
        st = None
    if st is None or not stat.S_ISREG(st.st_mode) or not os.access(path, os.R_OK):
        raise BadRequest(f"cannot use {what} {str(path)[:300]}: not found, or not a readable regular file")


def is_dir(path: Path) -> bool:
    """A directory FROM (a checkpoint); a path the OS cannot even look up (too long, a NUL) is not one,
    and gets the one "cannot use" answer from the file checks that follow."""
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def looks_like_path(spec: str) -> bool:
    return spec.startswith(("/", "./", "../", "~", ".\\")) or spec.lower().endswith(_PATH_SUFFIXES) or "\\" in spec


def local_path(spec: str, base_dir: Path) -> Path | None:
    """A FROM value that names a file (existing, or written like a path); None means a model name."""
    path = Path(spec).expanduser()
    if not path.is_absolute():
        path = base_dir / path
    try:
        exists = os.path.lexists(path)
    except ValueError:
        exists = False
    if looks_like_path(spec) or exists:
        return path
    return None


SERVER_PATHS_REFUSED = (
    "a Modelfile FROM or ADAPTER naming a file on the server is only accepted from a client on the server's "
    "own machine{admin}: upload the file with POST /api/blobs/<digest> and name it in 'files'"
)


def refuse_server_path(spec: str, keys_on: bool) -> None:
    """Refused without looking at the filesystem, so the answer says nothing about what exists there."""
    if looks_like_path(spec):
        raise BadRequest(SERVER_PATHS_REFUSED.format(admin=" with the admin key" if keys_on else ""))
