"""Image (and .wav) paths in a ``run`` prompt attach those files, as Ollama's CLI does (cli/images.py)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from ollamalike.cli.images import extract_images
from ollamalike.errors import BadRequest

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\0" * 32


def test_paths_are_attached_and_removed(tmp_path: Path) -> None:
    a = tmp_path / "a.png"
    a.write_bytes(PNG)
    spaced = tmp_path / "my cat.JPG"
    spaced.write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 16)
    clip = tmp_path / "hello.wav"
    clip.write_bytes(WAV)
    text = f"compare {a} and {str(spaced).replace(' ', chr(92) + ' ')} then '{clip}' please"
    out, images = extract_images(text, echo=False)
    assert out == "compare  and  then  please"
    assert [base64.b64decode(i)[:4] for i in images] == [PNG[:4], b"\xff\xd8\xff\xe0", b"RIFF"]


def test_text_that_only_looks_like_a_path_stays(tmp_path: Path) -> None:
    out, images = extract_images("see /no/such/file.png and ./x.jpeg, or a.png", echo=False)
    assert images == [] and out == "see /no/such/file.png and ./x.jpeg, or a.png"


def test_a_file_that_is_no_image_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"just text")
    with pytest.raises(BadRequest, match="invalid file type"):
        extract_images(f"look {fake}", echo=False)
