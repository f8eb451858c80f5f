"""Images at the edge: decoding and checking a request's images before anything reaches llama.cpp.

Every API hands its images here as base64 text (native ``images``, OpenAI ``image_url`` data URLs,
Anthropic ``image`` blocks). ``decode_images`` decodes each with Pillow (a well-kept decoder; the
runner never parses an image file) and returns raw RGB pixels. A value that is not base64, not an
image, corrupt or truncated, or over ``Config.max_image_pixels`` (``OLLAMALIKE_MAX_IMAGE_PIXELS``)
is a ``BadRequest`` naming the image, raised before any model loads. ``tag_messages`` and
``tag_prompt`` place Ollama's ``[img-N]`` tags in the text the template renders; the runner puts
each image's embeddings where its tag lands. An item that is a WAV file is an audio clip (Ollama passes
audio in ``images`` too; OpenAI's ``input_audio`` parts arrive the same way): PCM decoded to mono
float32 by the standard library, at most ``MAX_AUDIO_SECONDS``.
"""

from __future__ import annotations

import base64
import binascii
import functools
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypedDict

from ollamalike.errors import BadRequest

# Accepted around the base64 itself: what clients put there (a data URL's header is the caller's).
_WHITESPACE = re.compile(r"\s+")


class WireImage(TypedDict):
    """An image as the runner protocol carries it."""

    width: int
    height: int
    data: str  # base64 of width * height * 3 RGB bytes


@dataclass(frozen=True)
class Image:
    """A decoded image: RGB pixels, row by row."""

    width: int
    height: int
    rgb: bytes

    @functools.cached_property
    def _data(self) -> str:
        # Encoded once: a chat that is fitted to the context sends the same image several times.
        return base64.b64encode(self.rgb).decode("ascii")

    def to_wire(self) -> WireImage:
        return {"width": self.width, "height": self.height, "data": self._data}


class WireAudio(TypedDict):
    kind: str  # "audio"
    rate: int
    data: str  # base64 of little-endian float32 mono samples


@dataclass(frozen=True)
class Audio:
    """A decoded audio clip: mono float32 samples at ``rate`` Hz (the runner resamples to its projector's)."""

    rate: int
    samples: bytes

    @functools.cached_property
    def _data(self) -> str:
        return base64.b64encode(self.samples).decode("ascii")

    def to_wire(self) -> WireAudio:
        return {"kind": "audio", "rate": self.rate, "data": self._data}


Media = Image | Audio
MAX_AUDIO_SECONDS = 600  # one clip; longer ones are refused (a 400)


def _b64(text: str, where: str) -> bytes:
    try:
        data = base64.b64decode(_WHITESPACE.sub("", text), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"{where}: invalid image data: not base64") from None
    if not data:
        raise BadRequest(f"{where}: invalid image data: empty")
    return data


def is_wav(data: bytes) -> bool:
    return data[:4] == b"RIFF" and data[8:12] == b"WAVE"


def decode_wav(data: bytes, where: str = "audio") -> Audio:
    """A PCM WAV file (8, 16, 24 or 32-bit, any channels) to mono float32; BadRequest otherwise."""
    import wave

    import numpy as np

    try:
        with wave.open(io.BytesIO(data)) as w:
            rate, width, channels, frames = w.getframerate(), w.getsampwidth(), w.getnchannels(), w.getnframes()
            if rate <= 0 or channels <= 0 or frames <= 0:
                raise BadRequest(f"{where}: invalid audio: no samples")
            if frames > rate * MAX_AUDIO_SECONDS:
                raise BadRequest(f"{where}: audio is {frames / rate:.0f} s, over the limit of {MAX_AUDIO_SECONDS} s")
            raw = w.readframes(frames)
    except (wave.Error, EOFError) as e:
        raise BadRequest(f"{where}: invalid audio: not a PCM WAV file ({e})") from None
    usable = len(raw) // (width * channels) * width * channels
    if usable == 0:
        raise BadRequest(f"{where}: invalid audio: truncated")
    raw = raw[:usable]
    if width == 1:
        x = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        x = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        x = (np.where(v >= 1 << 23, v - (1 << 24), v)).astype(np.float32) / float(1 << 23)
    else:
        x = np.frombuffer(raw, dtype="<i4").astype(np.float32) / float(1 << 31)
    mono = x.reshape(-1, channels).mean(axis=1).astype("<f4")
    return Audio(rate, mono.tobytes())


def decode_media(text: str, max_pixels: int, where: str = "image") -> Media:
    """One base64 item of ``images``: a WAV file is audio (as Ollama takes it), anything else an image."""
    data = _b64(text, where)
    if is_wav(data):
        return decode_wav(data, where)
    return _decode_image(data, max_pixels, where)


def decode_image(text: str, max_pixels: int, where: str = "image") -> Image:
    """One base64 image to RGB pixels; BadRequest for anything that is not a whole, allowed image."""
    return _decode_image(_b64(text, where), max_pixels, where)


def _decode_image(data: bytes, max_pixels: int, where: str) -> Image:
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    try:
        # Pillow reads the header only here: the size is checked before any pixel is decoded.
        with PILImage.open(io.BytesIO(data)) as img:
            width, height = img.size
            if width <= 0 or height <= 0:
                raise BadRequest(f"{where}: invalid image: it has no pixels")
            if width * height > max_pixels:
                raise BadRequest(f"{where}: image is {width}x{height} ({width * height} pixels), over the limit of "
                                 f"{max_pixels} pixels (OLLAMALIKE_MAX_IMAGE_PIXELS)")
            img.load()
            rgb = img.convert("RGB")
            pixels = rgb.tobytes()
    except UnidentifiedImageError:
        raise BadRequest(f"{where}: invalid image: not a supported image format") from None
    except PILImage.DecompressionBombError:
        raise BadRequest(f"{where}: image is over the limit of {max_pixels} pixels (OLLAMALIKE_MAX_IMAGE_PIXELS)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        # Pillow's words for a truncated or corrupt file ("image file is truncated", "broken data stream").
        raise BadRequest(f"{where}: invalid image: corrupt or truncated ({e})") from None
    return Image(width, height, pixels)


def decode_images(texts: Sequence[str], max_pixels: int, where: str = "images") -> list[Media]:
    return [decode_media(t, max_pixels, f"{where}[{i}]") for i, t in enumerate(texts)]


def tag_text(content: str, first: int, count: int) -> str:
    """Ollama's rule for one message: each image's ``[img-N]`` replaces a ``[img]`` placeholder in the
    text, in order, or else goes in front of the text."""
    prefix = ""
    for n in range(first, first + count):
        tag = f"[img-{n}]"
        if "[img]" in content:
            content = content.replace("[img]", tag, 1)
        else:
            prefix += tag
    return prefix + content


def tag_prompt(prompt: str, count: int) -> str:
    """A generate prompt's tags: kept as written when it has ``[img-N]`` tags already, else Ollama's rule."""
    if "[img-" in prompt:
        missing = [n for n in range(count) if f"[img-{n}]" not in prompt]
        return "".join(f"[img-{n}]" for n in missing) + prompt
    return tag_text(prompt, 0, count)


def tag_messages(messages: Sequence[Mapping[str, object]], images: Sequence[Sequence[Media]]
                 ) -> tuple[list[dict[str, object]], list[Media]]:
    """Messages with their images' ``[img-N]`` tags in the content (N counts over these messages, as
    the runner numbers the images it is sent), and those images in that order. ``images[i]`` are
    message i's decoded images."""
    out: list[dict[str, object]] = []
    flat: list[Media] = []
    for msg, imgs in zip(messages, images, strict=True):
        copy = dict(msg)
        if imgs:
            copy.pop("images", None)
            content = msg.get("content")
            # The tags stand for the images from here on: the template (and its worker process) gets no pixels.
            copy["content"] = tag_text(content if isinstance(content, str) else "", len(flat), len(imgs))
            flat.extend(imgs)
        out.append(copy)
    return out, flat
