"""Ollama's manifest format: media types, Go-compatible JSON, building and validating manifests.

A manifest is an OCI/Docker v2 image manifest whose config blob describes the GGUF (format,
family, parameter size, quantization) and whose layers carry Ollama's media types. Blobs we build
are serialised with ``go_json`` (sorted keys, compact, Go's HTML escaping) and hold nothing
time-dependent, so the same inputs always give the same digests.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ollamalike.errors import BadRequest

MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.docker.container.image.v1+json"

MEDIA_MODEL = "application/vnd.ollama.image.model"
MEDIA_TEMPLATE = "application/vnd.ollama.image.template"
MEDIA_SYSTEM = "application/vnd.ollama.image.system"
MEDIA_PARAMS = "application/vnd.ollama.image.params"
MEDIA_LICENSE = "application/vnd.ollama.image.license"
MEDIA_ADAPTER = "application/vnd.ollama.image.adapter"
MEDIA_MESSAGES = "application/vnd.ollama.image.messages"
MEDIA_PROJECTOR = "application/vnd.ollama.image.projector"
# A draft model for speculative decoding (Modelfile DRAFT), Ollama's media type for it.
MEDIA_DRAFT = "application/vnd.ollama.image.draft"
# Ours: a model served by a remote engine (Modelfile ENGINE) has this JSON layer instead of weights.
MEDIA_ENGINE = "application/vnd.ollamalike.engine"

LAYER_MEDIA_TYPES = frozenset(
    {
        MEDIA_MODEL,
        MEDIA_TEMPLATE,
        MEDIA_SYSTEM,
        MEDIA_PARAMS,
        MEDIA_LICENSE,
        MEDIA_ADAPTER,
        MEDIA_MESSAGES,
        MEDIA_PROJECTOR,
        MEDIA_DRAFT,
        MEDIA_ENGINE,
        # Older Ollama models carry an embed layer; accepted so they can still be pulled and listed.
        "application/vnd.ollama.image.embed",
    }
)

_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}\Z")
_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_GO_ESCAPE_RE = re.compile("[<>&\u2028\u2029]")


def go_json(obj: object) -> bytes:
    """Bytes as Go's ``json.Marshal`` of a map would give: sorted keys, compact, HTML-safe escapes.

    Escaping after ``json.dumps`` is safe: these characters only ever occur inside strings.
    """
    text = json.dumps(obj, separators=(",", ":"), sort_keys=True, ensure_ascii=False, allow_nan=False)
    return _GO_ESCAPE_RE.sub(lambda m: _GO_ESCAPES[m.group(0)], text).encode("utf-8")


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


def build_config(
    *,
    model_format: str = "gguf",
    model_family: str = "",
    model_families: list[str] | None = None,
    model_type: str = "",
    file_type: str = "",
    diff_ids: list[str],
    renderer: str | None = None,
    parser: str | None = None,
    requires: str | None = None,
    draft_architecture: str | None = None,
    capabilities: list[str] | None = None,
) -> bytes:
    """The config blob; deliberately without timestamps so creates are reproducible.

    ``renderer``, ``parser``, ``requires``, ``capabilities`` and ``draft`` ({"model_format",
    "architecture"}) are Ollama's ConfigV2 fields, written only when set (``omitempty``), so older
    models keep their digests.
    """
    families = model_families if model_families is not None else ([model_family] if model_family else [])
    config: dict[str, object] = {
        "model_format": model_format,
        "model_family": model_family,
        "model_families": families,
        "model_type": model_type,
        "file_type": file_type,
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
    }
    for key, value in (("renderer", renderer), ("parser", parser), ("requires", requires)):
        if value:
            config[key] = value
    if capabilities:
        config["capabilities"] = list(capabilities)
    if draft_architecture is not None:
        config["draft"] = {"model_format": "gguf", "architecture": draft_architecture}
    return go_json(config)


def build_manifest(config: Descriptor, layers: list[Descriptor]) -> bytes:
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": config.to_json(),
        "layers": [layer.to_json() for layer in layers],
    }
    validate_manifest(manifest)
    return go_json(manifest)


def parse_manifest(data: bytes) -> dict[str, Any]:
    """Decode and validate manifest bytes; BadRequest on anything malformed."""
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadRequest(f"invalid manifest: not JSON ({e})") from None
    validate_manifest(obj)
    return obj  # type: ignore[no-any-return]


def _check_descriptor(desc: object, where: str, allowed: frozenset[str] | None) -> None:
    if not isinstance(desc, dict):
        raise BadRequest(f"invalid manifest: {where} must be an object")
    digest = desc.get("digest")
    if not isinstance(digest, str) or not _DIGEST_RE.match(digest):
        raise BadRequest(f"invalid manifest: {where} has invalid digest {str(digest)[:100]!r}")
    size = desc.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise BadRequest(f"invalid manifest: {where} has invalid size {size!r}")
    media = desc.get("mediaType")
    if not isinstance(media, str):
        raise BadRequest(f"invalid manifest: {where} has no mediaType")
    if allowed is not None and media not in allowed:
        raise BadRequest(f"invalid manifest: {where} has unsupported media type {media[:100]!r}")


def validate_manifest(obj: object) -> None:
    """Every digest and media type checked; run before any file is written for it."""
    if not isinstance(obj, dict):
        raise BadRequest("invalid manifest: must be a JSON object")
    if obj.get("schemaVersion") != 2:
        raise BadRequest(f"invalid manifest: unsupported schemaVersion {obj.get('schemaVersion')!r}")
    media = obj.get("mediaType", MANIFEST_MEDIA_TYPE)
    if media not in (MANIFEST_MEDIA_TYPE, OCI_MANIFEST_MEDIA_TYPE):
        raise BadRequest(f"invalid manifest: unsupported mediaType {str(media)[:100]!r}")
    _check_descriptor(obj.get("config"), "config", frozenset({CONFIG_MEDIA_TYPE, "application/vnd.oci.image.config.v1+json"}))
    layers = obj.get("layers")
    if not isinstance(layers, list):
        raise BadRequest("invalid manifest: layers must be a list")
    for i, layer in enumerate(layers):
        _check_descriptor(layer, f"layer {i}", LAYER_MEDIA_TYPES)
    # Every model has its weights: a manifest without them ("layers": []) could be tagged, but every
    # use of the model would then fail. Refused here, before a pull downloads anything for it.
    kinds = [layer["mediaType"] for layer in layers if layer["mediaType"] in (MEDIA_MODEL, MEDIA_ENGINE)]
    if not kinds:
        raise BadRequest(f"invalid manifest: it has no model layer ({MEDIA_MODEL})")
    if MEDIA_ENGINE in kinds and len(kinds) > 1:
        raise BadRequest(f"invalid manifest: a model has weights or one engine layer ({MEDIA_ENGINE}), not both")


def manifest_blobs(obj: dict[str, Any]) -> list[Descriptor]:
    """Config then layers, as descriptors, from a validated manifest."""
    descs = [obj["config"], *obj["layers"]]
    return [Descriptor(d["mediaType"], d["digest"], d["size"]) for d in descs]
