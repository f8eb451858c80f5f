"""A model's projector (mmproj) layers: telling one from a model at create, what it takes (images,
audio), and ``/api/show``'s ``projector_info``.

A projector is a GGUF whose ``general.architecture`` is ``clip`` (Ollama's rule, and what llama.cpp's
converters write); its ``clip.has_vision_encoder`` / ``clip.has_audio_encoder`` say which media it
encodes. Its layer has media type ``application/vnd.ollama.image.projector``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

PROJECTOR_ARCHITECTURES = ("clip",)


class HasMetadata(Protocol):
    @property
    def architecture(self) -> str: ...
    @property
    def model_info(self) -> Mapping[str, object]: ...


def is_projector(info: HasMetadata) -> bool:
    return info.architecture in PROJECTOR_ARCHITECTURES


def media_of(info: HasMetadata) -> tuple[bool, bool]:
    """(images, audio): what the projector encodes. One that says neither is taken as a vision projector
    (older LLaVA conversions carry no flags)."""
    meta = info.model_info
    vision, audio = meta.get("clip.has_vision_encoder"), meta.get("clip.has_audio_encoder")
    if vision is None and audio is None:
        return True, False
    return bool(vision), bool(audio)


def projector_media(infos: list[HasMetadata]) -> tuple[bool, bool]:
    """(images, audio) over a model's projector layers (their GGUF metadata)."""
    kinds = [media_of(info) for info in infos]
    return any(v for v, _ in kinds), any(a for _, a in kinds)


def projector_info(info: HasMetadata) -> dict[str, object]:
    """The projector GGUF's metadata, as /api/show's ``projector_info`` (without its name)."""
    return {k: v for k, v in info.model_info.items() if k != "general.name"}
