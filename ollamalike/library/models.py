"""Reading models out of the store: list, show, copy, delete and resolve (what inference loads).

Text layers (template, system, params, messages, license) are small blobs read on demand; parsed
GGUF metadata is cached in the catalog per model blob, and resolved models are memoised per
manifest digest (a digest names immutable content), so resolving on every request is cheap.
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ollamalike.errors import BadRequest, InternalError
from ollamalike.jsontypes import JSONObject, JSONValue
from ollamalike.library.info_cache import gguf_info
from ollamalike.modelfile import NAME_RE, SEMVER_RE
from ollamalike.names import ModelName
from ollamalike.remote.engine import Engine
from ollamalike.store import Store, local_rfc3339
from ollamalike.store.manifest import (
    MEDIA_ADAPTER,
    MEDIA_DRAFT,
    MEDIA_ENGINE,
    MEDIA_LICENSE,
    MEDIA_MESSAGES,
    MEDIA_MODEL,
    MEDIA_PARAMS,
    MEDIA_PROJECTOR,
    MEDIA_SYSTEM,
    MEDIA_TEMPLATE,
)

if TYPE_CHECKING:
    from ollamalike.gguf_info import GGUFInfo



@dataclass
class ResolvedModel:
    """What inference loads and prompts. ``name`` is the display form of the name it was resolved
    by (``ModelName.display``); the scheduler keys loaded models by it, case-insensitively."""

    name: str
    digest: str
    model_path: Path
    adapters: list[Path]
    projectors: list[Path]
    template: str | None
    system: str | None
    parameters: JSONObject  # the params layer: option name -> value, as the Modelfile's PARAMETERs
    messages: list[JSONObject]  # the MESSAGE layer: {"role", "content"} objects
    info: GGUFInfo
    details: JSONObject  # /api/tags "details" (format, family, parameter_size, ...)
    capabilities: list[str]
    license: list[str] = field(default_factory=list)
    model_digest: str = ""
    modified_at: str = ""
    # From the config blob (Ollama's ConfigV2): the prompt renderer and output parser by name
    # ("qwen3-coder", "harmony", ...; template.parsers has the parsers), and the minimum daemon
    # version; None when the model names none.
    renderer: str | None = None
    parser: str | None = None
    requires: str | None = None
    draft_path: Path | None = None  # the draft model's GGUF (a DRAFT layer), for speculative decoding
    model_splits: list[Path] = field(default_factory=list)  # a split GGUF's other shards, in order
    # Served by a remote engine (Modelfile ENGINE): no weights here; model_path is empty and
    # ``info`` knows nothing (inference/remote.py and the scheduler take this path).
    engine: Engine | None = None


@dataclass
class Layers:
    """A manifest's layers read back: what every reader of a model needs."""

    model: str | None = None
    model_splits: list[str] = field(default_factory=list)  # more model layers: the other shards of a split GGUF
    adapters: list[str] = field(default_factory=list)
    projectors: list[str] = field(default_factory=list)
    template: str | None = None
    system: str | None = None
    parameters: JSONObject = field(default_factory=dict)
    messages: list[JSONObject] = field(default_factory=list)
    license: list[str] = field(default_factory=list)
    draft: str | None = None
    engine: Engine | None = None


@dataclass(frozen=True)
class ModelConfig:
    """What the config blob says beyond the GGUF details: Ollama's renderer, parser, requires and
    capabilities fields (a model pulled from a registry may carry them)."""

    renderer: str | None = None
    parser: str | None = None
    requires: str | None = None
    capabilities: tuple[str, ...] = ()
    engine: Engine | None = None


# Template, system, params, messages and license layers are read into memory: a pulled model with a
# gigabyte "system prompt" must fail clearly rather than exhaust the daemon's memory.
MAX_TEXT_LAYER_BYTES = 32 << 20
_BINARY_LAYERS = (MEDIA_MODEL, MEDIA_ADAPTER, MEDIA_PROJECTOR, MEDIA_DRAFT)
MAX_CONFIG_BYTES = 1 << 20


def _text(store: Store, digest: str) -> str:
    # Pulled layers are untrusted bytes: undecodable ones still show, never crash a request.
    return store.read_blob(digest).decode("utf-8", errors="replace")


def _json(store: Store, media: str, digest: str) -> JSONValue:
    try:
        value: JSONValue = json.loads(store.read_blob(digest))
        return value
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BadRequest(f"model has an invalid {media.rsplit('.', 1)[-1]} layer {digest}") from None


def _layers_of(manifest: JSONObject) -> list[tuple[str, str, int]]:
    """(media type, digest, size) of each layer of a manifest this store wrote or verified."""
    layers = manifest.get("layers", [])
    out: list[tuple[str, str, int]] = []
    for layer in layers if isinstance(layers, list) else []:
        if not isinstance(layer, dict):
            raise InternalError("manifest layer is not an object")
        media, digest, size = layer["mediaType"], layer["digest"], layer.get("size", 0)
        if not isinstance(media, str) or not isinstance(digest, str):
            raise InternalError("manifest layer without a mediaType or digest")
        out.append((media, digest, size if isinstance(size, int) else 0))
    return out


def read_layers(store: Store, manifest: JSONObject) -> Layers:
    out = Layers()
    for media, digest, size in _layers_of(manifest):
        if media not in _BINARY_LAYERS and size > MAX_TEXT_LAYER_BYTES:
            raise BadRequest(f"{media} layer {digest} is {size} bytes: too large to be a text layer")
        if media == MEDIA_MODEL and out.model is not None:
            out.model_splits.append(digest)  # several model layers are one split GGUF, in shard order
        elif media == MEDIA_MODEL:
            out.model = digest
        elif media == MEDIA_ADAPTER:
            out.adapters.append(digest)
        elif media == MEDIA_PROJECTOR:
            out.projectors.append(digest)
        elif media == MEDIA_DRAFT:
            out.draft = digest
        elif media == MEDIA_TEMPLATE:
            out.template = _text(store, digest)
        elif media == MEDIA_SYSTEM:
            out.system = _text(store, digest)
        elif media == MEDIA_LICENSE:
            out.license.append(_text(store, digest))
        elif media == MEDIA_PARAMS:
            params = _json(store, media, digest)
            out.parameters = params if isinstance(params, dict) else {}
        elif media == MEDIA_ENGINE:
            out.engine = Engine.from_layer(store.read_blob(digest))
        elif media == MEDIA_MESSAGES:
            messages = _json(store, media, digest)
            out.messages = [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []
    return out


def read_config(store: Store, manifest: JSONObject) -> ModelConfig:
    """The renderer, parser, requires and capabilities of a manifest's config blob.

    The blob is untrusted when pulled: a field of the wrong type, a name that is not a plain word, a
    missing or undecodable blob all read as "not set" rather than making the model unusable.
    """
    config = manifest.get("config")
    digest = config.get("digest") if isinstance(config, dict) else None
    size = config.get("size") if isinstance(config, dict) else None
    if not isinstance(digest, str) or not store.has_blob(digest) or not isinstance(size, int) or size > MAX_CONFIG_BYTES:
        return ModelConfig()
    try:
        obj: JSONValue = json.loads(store.read_blob(digest))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return ModelConfig()
    if not isinstance(obj, dict):
        return ModelConfig()

    def word(key: str, pattern: re.Pattern[str]) -> str | None:
        value = obj.get(key)
        return value if isinstance(value, str) and pattern.fullmatch(value) else None

    requires = word("requires", SEMVER_RE)
    caps = obj.get("capabilities")
    return ModelConfig(
        renderer=word("renderer", NAME_RE),
        parser=word("parser", NAME_RE),
        requires=requires[1:] if requires and requires.startswith("v") else requires,
        capabilities=tuple(c for c in caps if isinstance(c, str) and c) if isinstance(caps, list) else (),
    )


# --- capabilities ----------------------------------------------------------------------------

_GO_TOOLS = re.compile(r"\.Tools\b")
_GO_SUFFIX = re.compile(r"\.Suffix\b")
_GO_THINK = re.compile(r"\.Think\b")
_JINJA_TOOLS = re.compile(r"\btools\b")
_JINJA_THINK = re.compile(r"\b(enable_thinking|reasoning_content)\b")


class ModelKind(Protocol):
    """What ``capabilities`` reads of a model's GGUF metadata (``GGUFInfo``)."""

    @property
    def is_embedding_model(self) -> bool: ...
    @property
    def chat_template(self) -> str | None: ...


def capabilities(template: str | None, info: ModelKind, projectors: list[str],
                 media: tuple[bool, bool] = (True, False), declared: tuple[str, ...] = ()) -> list[str]:
    """Ollama's capability list, read from the effective Go template (or the GGUF's Jinja template
    when that is rendered directly), plus any the config blob declares (``declared``), as Ollama adds them.
    ``media``: whether the projectors encode images and audio."""
    caps = _capabilities(template, info, projectors, media)
    return caps + [c for c in dict.fromkeys(declared) if c not in caps]


def _capabilities(template: str | None, info: ModelKind, projectors: list[str],
                  media: tuple[bool, bool]) -> list[str]:
    if info.is_embedding_model:
        return ["embedding"]
    caps = ["completion"]
    if template is not None:
        if _GO_TOOLS.search(template):
            caps.append("tools")
        if _GO_SUFFIX.search(template):
            caps.append("insert")
        if _GO_THINK.search(template):
            caps.append("thinking")
    else:
        jinja = info.chat_template or ""
        if _JINJA_TOOLS.search(jinja):
            caps.append("tools")
        if _JINJA_THINK.search(jinja):
            caps.append("thinking")
    if projectors:  # media: what the projectors encode (images, audio)
        caps += [c for c, on in zip(("vision", "audio"), media, strict=True) if on]
    return caps


# --- resolve ---------------------------------------------------------------------------------

_RESOLVED_MAX = 64
_resolved: OrderedDict[tuple[str, str], ResolvedModel] = OrderedDict()
_resolved_lock = threading.Lock()


def resolve_model(store: Store, name: ModelName | str) -> ResolvedModel:
    """Everything inference needs to load and prompt a model. ModelNotFound when there is no such tag.
    ``name`` is parsed here only when it is a string (inference passes the ``ModelName`` its request
    parsed; the store takes it as it is)."""
    model = name if isinstance(name, ModelName) else ModelName.parse(name)
    row = store.tag_info(model)
    key = (str(store.root), row.digest)
    with _resolved_lock:
        hit = _resolved.get(key)
        if hit is not None:
            _resolved.move_to_end(key)
    if hit is None:
        hit = _resolve_uncached(store, row.digest)
        with _resolved_lock:
            _resolved[key] = hit
            while len(_resolved) > _RESOLVED_MAX:
                _resolved.popitem(last=False)
    # Copies: callers may adjust their model's parameters or messages without touching the memo.
    return dataclasses.replace(
        hit,
        name=model.display,
        parameters=dict(hit.parameters),
        messages=[dict(m) for m in hit.messages],
        details={**row.details},
        modified_at=local_rfc3339(row.modified_at),
    )


def with_parser_capabilities(model: ResolvedModel) -> list[str]:
    """The model's capabilities plus those of its output parser, named or detected (template.parsers)."""
    from ollamalike.template.parsers import detect

    return _parser_capabilities(model.parser or detect(model), model.capabilities)


def _parser_capabilities(parser: str | None, caps: list[str]) -> list[str]:
    """A parser that yields tool calls or thinking gives the model those capabilities (as Ollama's)."""
    from ollamalike.template.parsers import family

    chosen = family(parser)
    if chosen is None or "completion" not in caps:
        return caps
    extra = [c for c, has in (("tools", chosen.tools), ("thinking", chosen.thinking)) if has and c not in caps]
    return caps + extra


def _resolve_uncached(store: Store, digest: str) -> ResolvedModel:
    manifest = json.loads(store.read_blob(digest))
    layers = read_layers(store, manifest)
    if layers.engine is not None:
        return _resolve_remote(digest, layers, layers.engine)
    config = read_config(store, manifest)
    if layers.model is None:
        raise InternalError(f"manifest {digest} has no model layer")
    info = gguf_info(store, layers.model, layers.model_splits)
    resolved = ResolvedModel(
        name="",
        digest=digest,
        model_path=store.blob_path(layers.model),
        adapters=[store.blob_path(d) for d in layers.adapters],
        projectors=[store.blob_path(d) for d in layers.projectors],
        template=layers.template,
        system=layers.system,
        parameters=layers.parameters,
        messages=layers.messages,
        info=info,
        details={},
        capabilities=[],
        license=layers.license,
        model_digest=layers.model,
        renderer=config.renderer,
        parser=config.parser,
        requires=config.requires,
        draft_path=store.blob_path(layers.draft) if layers.draft else None,
        model_splits=[store.blob_path(d) for d in layers.model_splits],
    )
    from ollamalike.library.projector import projector_media

    media = projector_media([gguf_info(store, d) for d in layers.projectors]) if layers.projectors else (False, False)
    resolved.capabilities = capabilities(effective_template(resolved), info, layers.projectors, media,
                                         config.capabilities)
    resolved.capabilities = with_parser_capabilities(resolved)
    return resolved


def remote_info() -> GGUFInfo:
    """The GGUF facts of a remote engine's model: none (its weights are the engine's)."""
    from ollamalike.gguf_info import GGUFInfo

    return GGUFInfo(version=0, architecture="", parameter_count=0, parameter_size="", file_type="",
                    context_length=None, embedding_length=None, block_count=None, head_count=None,
                    head_count_kv=None, chat_template=None, bos_token=None, eos_token=None,
                    is_embedding_model=False, model_info={}, file_size=0, alignment=0, tensor_count=0,
                    tensor_bytes=0)


def remote_capabilities(template: str | None) -> list[str]:
    """With a TEMPLATE, what it renders (as for a local model); without one the engine's own chat
    template serves, and tools are offered (an engine that cannot take them says so)."""
    if template is not None:
        return capabilities(template, remote_info(), [])
    return ["completion", "tools"]


def _resolve_remote(digest: str, layers: Layers, engine: Engine) -> ResolvedModel:
    return ResolvedModel(
        name="", digest=digest, model_path=Path(), adapters=[], projectors=[], template=layers.template,
        system=layers.system, parameters=layers.parameters, messages=layers.messages, info=remote_info(),
        details={}, capabilities=remote_capabilities(layers.template), license=layers.license, engine=engine)


def effective_template(resolved: ResolvedModel) -> str | None:
    """The Go template prompts are rendered with (the TEMPLATE layer, else the one detected from the
    GGUF's chat template); None when the GGUF's Jinja template is rendered directly, or when a remote
    engine applies its own."""
    if resolved.engine is not None:
        return resolved.template
    from ollamalike.template import go_template_for

    return go_template_for(resolved)
