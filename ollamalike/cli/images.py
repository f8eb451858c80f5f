"""Image paths in a prompt, as Ollama's ``run`` takes them: a path to a .png/.jpg/.jpeg/.webp (or .wav) file in the
text (``/abs/cat.png``, ``./cat.jpg``, spaces escaped as ``\\ ``, optionally in single quotes) attaches
that file to the message and leaves the prompt. Only for a model with the ``vision`` or ``audio`` capability; a
path that names no file stays text. The daemon decodes and checks the image (ollamalike/media.py).
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import click

from ollamalike.errors import BadRequest

# A path starts with /, ./ or \ (or a drive letter) and ends in an image extension; escaped spaces
# belong to it. Text that only looks like a path is dropped by the existence check.
_PATH = re.compile(r"(?:[a-zA-Z]:)?(?:\./|/|\\)(?:\\ |[^\s])+?\.(?:jpg|jpeg|png|webp|wav)\b", re.IGNORECASE)
MAX_FILE_BYTES = 100 * 1024 * 1024
# The formats the check below accepts, by their first bytes.
_MAGIC = ((b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpeg"))


def _kind(head: bytes) -> str | None:
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    if head[:4] == b"RIFF" and head[8:12] in (b"WEBP", b"WAVE"):
        return "webp" if head[8:12] == b"WEBP" else "wav"
    return None


def _normalize(path: str) -> str:
    return path.replace("\\ ", " ").replace("%20", " ")


def read_image(path: Path) -> str:
    """The file as base64; BadRequest when it is not a PNG, JPEG, WebP or WAV file, or over 100 MB."""
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise BadRequest(f"{path}: file size exceeds the maximum of 100 MB")
    data = path.read_bytes()
    if _kind(data[:16]) is None:
        raise BadRequest(f"{path}: invalid file type: not a PNG, JPEG or WebP image or a WAV file")
    return base64.b64encode(data).decode("ascii")


def extract_images(text: str, echo: bool = True) -> tuple[str, list[str]]:
    """The prompt without the image paths it names, and those images (base64), in order."""
    images: list[str] = []
    for found in _PATH.findall(text):
        path = Path(_normalize(found)).expanduser()
        if not path.is_file():
            continue
        images.append(read_image(path))
        if echo:
            kind = "audio" if path.suffix.lower() == ".wav" else "image"
            click.echo(f"Added {kind} '{path}'", err=True)
        for form in (f"'{path}'", f"'{found}'", found):
            text = text.replace(form, "")
    return text.strip(), images
