"""Images at the edge (ollamalike/media.py): Pillow decodes and checks them before any model sees them,
and Ollama's [img-N] tags go into the text the template renders."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image as PILImage

from ollamalike.config import DEFAULT_MAX_IMAGE_PIXELS, load_config
from ollamalike.errors import BadRequest
from ollamalike.media import Image, decode_image, decode_images, tag_messages, tag_prompt, tag_text


def encoded(fmt: str = "PNG", size: tuple[int, int] = (8, 6), color: tuple[int, ...] = (200, 10, 30),
            mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    PILImage.new(mode, size, color).save(buf, format=fmt)
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF"])
def test_formats_decode_to_rgb(fmt: str) -> None:
    img = decode_image(b64(encoded(fmt)), 10_000)
    assert (img.width, img.height) == (8, 6)
    assert len(img.rgb) == 8 * 6 * 3
    r, g, b = img.rgb[0], img.rgb[1], img.rgb[2]
    assert r > 150 and g < 80 and b < 90  # the red survives (lossy formats move it a little)


def test_alpha_and_grayscale_become_rgb() -> None:
    rgba = decode_image(b64(encoded("PNG", color=(1, 2, 3, 0), mode="RGBA")), 10_000)
    gray = decode_image(b64(encoded("PNG", color=77, mode="L")), 10_000)
    assert rgba.rgb[:3] == bytes([1, 2, 3]) and len(rgba.rgb) == 8 * 6 * 3
    assert gray.rgb[:3] == bytes([77, 77, 77])


def test_same_image_same_pixels_and_whitespace_in_base64_is_accepted() -> None:
    text = b64(encoded())
    wrapped = "\n".join(text[i:i + 20] for i in range(0, len(text), 20))
    assert decode_image(text, 10_000) == decode_image(wrapped, 10_000)


@pytest.mark.parametrize(("data", "needle"), [
    ("not base64 at all!", "not base64"),
    ("", "empty"),
    (b64(b"hello, this is plain text and no image"), "not a supported image format"),
    (b64(encoded("PNG", size=(64, 64))[:60]), "corrupt or truncated"),
    (b64(encoded("JPEG", size=(64, 64))[:200]), "corrupt or truncated"),
    # A PNG signature and header, then zeros where the chunks should be: Pillow cannot read it.
    (b64(encoded("PNG", size=(16, 16))[:33] + b"\x00" * 40), "invalid image"),
])
def test_bad_images_are_bad_requests(data: str, needle: str) -> None:
    with pytest.raises(BadRequest) as e:
        decode_image(data, 10_000, where="images[0]")
    assert needle in str(e.value) and str(e.value).startswith("images[0]: ")


def test_pixel_limit_is_checked_before_decoding() -> None:
    big = b64(encoded("PNG", size=(200, 100)))
    assert decode_image(big, 20_000).width == 200
    with pytest.raises(BadRequest, match=r"200x100 \(20000 pixels\), over the limit of 19999 pixels"):
        decode_image(big, 19_999)


def test_decode_images_names_the_bad_one() -> None:
    good = b64(encoded())
    with pytest.raises(BadRequest, match=r"^messages\[2\].images\[1\]: invalid image"):
        decode_images([good, b64(b"nope")], 10_000, "messages[2].images")


def test_config_limit() -> None:
    assert load_config({}).max_image_pixels == DEFAULT_MAX_IMAGE_PIXELS == 16 * 1024 * 1024
    assert load_config({"OLLAMALIKE_MAX_IMAGE_PIXELS": "4096"}).max_image_pixels == 4096


def test_ollama_tag_rules() -> None:
    assert tag_text("what is this?", 0, 2) == "[img-0][img-1]what is this?"
    assert tag_text("compare [img] with [img]", 3, 2) == "compare [img-3] with [img-4]"
    assert tag_text("one [img] only", 0, 2) == "[img-1]one [img-0] only"
    # A generate prompt that places its tags keeps them; missing ones go in front.
    assert tag_prompt("look: [img-1] then [img-0]", 2) == "look: [img-1] then [img-0]"
    assert tag_prompt("look: [img-1]", 2) == "[img-0]look: [img-1]"
    assert tag_prompt("plain", 1) == "[img-0]plain"


def test_tag_messages_numbers_over_the_kept_messages() -> None:
    a, b, c = (Image(1, 1, bytes([i, i, i])) for i in range(3))
    msgs: list[dict[str, object]] = [{"role": "user", "content": "first", "images": ["x", "y"]},
                                     {"role": "assistant", "content": "ok"},
                                     {"role": "user", "content": "and [img] here", "images": ["z"]}]
    out, flat = tag_messages(msgs, [[a, b], [], [c]])
    assert [m["content"] for m in out] == ["[img-0][img-1]first", "ok", "and [img-2] here"]
    assert flat == [a, b, c]
    assert msgs[0]["content"] == "first" and msgs[0]["images"] == ["x", "y"]  # the caller's are not changed
    assert all("images" not in m for m in out)  # the template renders tags, never pixels


def _wav(width: int, channels: int, values: list[int], rate: int = 8000) -> bytes:
    import wave

    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(b"".join(v.to_bytes(width, "little", signed=width > 1) for v in values))
    return buf.getvalue()


@pytest.mark.parametrize(("width", "values", "expected"), [
    (1, [128, 255, 0], [0.0, 127 / 128, -1.0]),
    (2, [0, 16384, -32768], [0.0, 0.5, -1.0]),
    (3, [0, 1 << 22, -(1 << 23)], [0.0, 0.5, -1.0]),
    (4, [0, 1 << 30, -(1 << 31)], [0.0, 0.5, -1.0]),
])
def test_wav_is_audio_as_mono_float32(width: int, values: list[int], expected: list[float]) -> None:
    import numpy as np

    from ollamalike.media import Audio, decode_media

    clip = decode_media(b64(_wav(width, 1, values)), 10_000)
    assert isinstance(clip, Audio) and clip.rate == 8000
    assert np.frombuffer(clip.samples, dtype="<f4").tolist() == pytest.approx(expected, abs=1e-6)
    stereo = decode_media(b64(_wav(2, 2, [16384, 0, -16384, -16384])), 10_000)
    assert isinstance(stereo, Audio)
    assert np.frombuffer(stereo.samples, dtype="<f4").tolist() == pytest.approx([0.25, -0.5])


def test_bad_wav_is_a_bad_request() -> None:
    from ollamalike.media import decode_media

    with pytest.raises(BadRequest, match="invalid audio"):
        decode_media(b64(_wav(2, 1, [1, 2, 3])[:30]), 10_000, "images[0]")
    with pytest.raises(BadRequest, match="invalid audio"):
        decode_media(b64(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk"), 10_000)
