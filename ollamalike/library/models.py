"""Reading models out of the store: list, show, copy, delete and resolve (what inference loads).

Text layers (template, system, params, messages, license) are small blobs read on demand; parsed
GGUF metadata is cached in the catalog per model blob, and resolved models are memoised per
manifest digest (a digest names immutable content), so resolving on every request is cheap.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ollamalike import modelfile, options
from ollamalike.errors import BadRequest, InternalError, OllamalikeError
from ollamalike.jsontypes import JSONObject, JSONValue
from ollamalike.names import ModelName
from ollamalike.store import Store, local_rfc3339
from ollamalike.store.manifest import (
    MEDIA_ADAPTER,
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

_INFO_MODULE = "ollamalike.gguf_info"


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
    # The Modelfile's RENDERER and PARSER (Ollama's names; template.parsers has the parsers).
    renderer: str | None = None
    parser: str | None = None


@dataclass
class Layers:
    """A manifest's layers read back: what every reader of a model needs."""

    model: str | None = None
    adapters: list[str] = field(default_factory=list)
    projectors: list[str] = field(default_factory=list)
    template: str | None = None
    system: str | None = None
    parameters: JSONObject = field(default_factory=dict)
    messages: list[JSONObject] = field(default_factory=list)
    license: list[str] = field(default_factory=list)


# Template, system, params, messages and license layers are read into memory: a pulled model with a
# gigabyte "system prompt" must fail clearly rather than exhaust the daemon's memory.
MAX_TEXT_LAYER_BYTES = 32 << 20
_BINARY_LAYERS = (MEDIA_MODEL, MEDIA_ADAPTER, MEDIA_PROJECTOR)


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
        if media == MEDIA_MODEL:
            out.model = digest
        elif media == MEDIA_ADAPTER:
            out.adapters.append(digest)
        elif media == MEDIA_PROJECTOR:
            out.projectors.append(digest)
        elif media == MEDIA_TEMPLATE:
            out.template = _text(store, digest)
        elif media == MEDIA_SYSTEM:
            out.system = _text(store, digest)
        elif media == MEDIA_LICENSE:
            out.license.append(_text(store, digest))
        elif media == MEDIA_PARAMS:
            params = _json(store, media, digest)
            out.parameters = params if isinstance(params, dict) else {}
        elif media == MEDIA_MESSAGES:
            messages = _json(store, media, digest)
            out.messages = [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []
    return out


# --- GGUF info: parsed once per blob, cached in the catalog as tagged JSON -------------------


def encode_info(value: object) -> JSONValue:
    """JSON for a GGUFInfo, keeping what plain JSON would lose (tuples, int keys, nested dataclasses)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        cls = type(value)
        return {
            "__dataclass__": cls.__qualname__,
            "fields": {f.name: encode_info(getattr(value, f.name)) for f in dataclasses.fields(value)},
        }
    if isinstance(value, tuple):
        return {"__tuple__": [encode_info(v) for v in value]}
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return {k: encode_info(v) for k, v in value.items()}
        return {"__pairs__": [[encode_info(k), encode_info(v)] for k, v in value.items()]}
    if isinstance(value, list):
        return [encode_info(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"cannot cache value of type {type(value).__name__}")


def decode_info(value: JSONValue) -> object:
    """The inverse of ``encode_info``; only dataclasses defined in gguf_info are ever constructed."""
    if isinstance(value, list):
        return [decode_info(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "__dataclass__" in value:
        module = importlib.import_module(_INFO_MODULE)
        name, fields = value["__dataclass__"], value["fields"]
        cls: object = getattr(module, name, None) if isinstance(name, str) else None
        if not isinstance(cls, type) or not dataclasses.is_dataclass(cls) or cls.__module__ != _INFO_MODULE:
            raise ValueError(f"unknown cached type {name!r}")
        if not isinstance(fields, dict):
            raise TypeError("cached dataclass fields are not an object")
        return cls(**{k: decode_info(v) for k, v in fields.items()})
    if "__tuple__" in value:
        return tuple(decode_info(v) for v in _array(value["__tuple__"]))
    if "__pairs__" in value:
        return {decode_info(k): decode_info(v) for k, v in (_pair(p) for p in _array(value["__pairs__"]))}
    return {k: decode_info(v) for k, v in value.items()}


def _array(value: JSONValue) -> list[JSONValue]:
    if not isinstance(value, list):
        raise TypeError("cached value is not an array")
    return value


def _pair(value: JSONValue) -> tuple[JSONValue, JSONValue]:
    key, item = _array(value)  # a ValueError when it is not two items
    return key, item


def gguf_info(store: Store, digest: str) -> GGUFInfo:
    """Parsed metadata of a GGUF blob: from the catalog cache, else parsed and cached."""
    from ollamalike.gguf_info import GGUFInfo, read_gguf_info

    cached = store.cached_info(digest)
    if cached is not None:
        try:
            decoded = decode_info(cached)
        except (TypeError, ValueError, KeyError):
            decoded = None  # written by another version: parse again below
        if isinstance(decoded, GGUFInfo):
            return decoded
    info = read_gguf_info(store.blob_path(digest))
    # Not JSON-representable: still correct, only uncached.
    with contextlib.suppress(TypeError):
        store.cache_info(digest, encode_info(info))
    return info


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


def capabilities(template: str | None, info: ModelKind, projectors: list[str]) -> list[str]:
    """Ollama's capability list, read from the effective Go template (or the GGUF's Jinja template
    when that is rendered directly)."""
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
    if projectors:
        caps.append("vision")
    return caps


# --- resolve ---------------------------------------------------------------------------------

_RESOLVED_MAX = 64
_resolved: OrderedDict[tuple[str, str], ResolvedModel] = OrderedDict()
_resolved_lock = threading.Lock()


def resolve_model(store: Store, name: str) -> ResolvedModel:
    """Everything inference needs to load and prompt a model. ModelNotFound when there is no such tag."""
    model = ModelName.parse(name)
    row = store.tag_info(name)
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


def _config_name(store: Store, manifest: JSONObject, key: str) -> str | None:
    """``renderer``/``parser`` of the manifest's config blob (Ollama's config fields), if set."""
    config = manifest.get("config")
    digest = config.get("digest") if isinstance(config, dict) else None
    if not isinstance(digest, str):
        return None
    try:
        body = json.loads(store.read_blob(digest))
    except (OSError, ValueError, OllamalikeError):
        return None  # a config blob that is gone or not JSON names nothing; the model still serves
    value = body.get(key) if isinstance(body, dict) else None
    return value if isinstance(value, str) and value else None


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
    if layers.model is None:
        raise InternalError(f"manifest {digest} has no model layer")
    info = gguf_info(store, layers.model)
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
        renderer=_config_name(store, manifest, "renderer"),
        parser=_config_name(store, manifest, "parser"),
    )
    resolved.capabilities = capabilities(effective_template(resolved), info, layers.projectors)
    resolved.capabilities = with_parser_capabilities(resolved)
    return resolved


def effective_template(resolved: ResolvedModel) -> str | None:
    """The Go template prompts are rendered with (the TEMPLATE layer, else the one detected from the
    GGUF's chat template); None when the GGUF's Jinja template is rendered directly."""
    from ollamalike.template import go_template_for

    return go_template_for(resolved)


# --- list, show, copy, delete ----------------------------------------------------------------


def list_models(store: Store) -> list[dict[str, object]]:
    """/api/tags entries, newest first."""
    out = []
    for row in store.list_tags():
        display = ModelName.parse(row.name).display
        out.append(
            {
                "name": display,
                "model": display,
                "modified_at": local_rfc3339(row.modified_at),
                "size": row.size,
                "digest": row.digest.split(":", 1)[1],
                "details": dict(row.details),
            }
        )
    return out


def _text_field(message: JSONObject, name: str) -> str:
    value = message.get(name, "")
    return value if isinstance(value, str) else ""


def show_modelfile(display: str, resolved: ResolvedModel) -> str:
    """A Modelfile that builds the same model again: blobs by path, the rest verbatim."""
    mf = modelfile.Modelfile(
        from_=str(resolved.model_path),
        parameters=options.json_to_params(resolved.parameters),
        template=resolved.template,
        system=resolved.system,
        adapters=[str(p) for p in resolved.adapters],
        license=list(resolved.license),
        messages=[{"role": _text_field(m, "role"), "content": _text_field(m, "content")} for m in resolved.messages],
    )
    header = (
        '# Modelfile generated by "ollamalike show"\n'
        "# To build a new Modelfile based on this, replace FROM with:\n"
        f"# FROM {display}\n\n"
    )
    return header + modelfile.format(mf)


def show_model(store: Store, name: str, verbose: bool = False) -> dict[str, object]:
    """/api/show. ``verbose`` reads the GGUF again for every array (the vocabulary too), which the
    cached metadata leaves out; it can take a moment on a large vocabulary, so call it off the loop."""
    resolved = resolve_model(store, name)
    model_info = resolved.info.model_info
    if verbose:
        from ollamalike.gguf_info import read_gguf_info

        model_info = read_gguf_info(resolved.model_path, verbose=True).model_info
    out: dict[str, object] = {
        "license": "\n".join(resolved.license),
        "modelfile": show_modelfile(resolved.name, resolved),
        "parameters": options.format_show_parameters(resolved.parameters),
        # What prompts are actually rendered with, as Ollama shows it (the Modelfile keeps layers only).
        "template": effective_template(resolved) or resolved.info.chat_template or "",
        "details": resolved.details,
        "model_info": _shown_model_info(model_info),
        "capabilities": list(resolved.capabilities),
        "modified_at": resolved.modified_at,
    }
    if resolved.system is not None:
        out["system"] = resolved.system
    if resolved.messages:
        out["messages"] = resolved.messages
    return out


# Ollama's GetModelInfo deletes these: the name is the GGUF author's, not the model's, and the chat
# template is the response's "template" already.
_HIDDEN_INFO_KEYS = ("general.name", "tokenizer.chat_template")


def _shown_model_info(model_info: dict[str, object]) -> dict[str, object]:
    """``model_info`` as current Ollama returns it: without general.name and the chat template. Arrays
    the metadata left out (longer than gguf_walk.SHOW_ARRAY_LIMIT, unless verbose) stay null, as
    Ollama's array marshalling gives them (its docs' ``[]`` is not what it returns)."""
    return {k: v for k, v in model_info.items() if k not in _HIDDEN_INFO_KEYS}


def copy_model(store: Store, src: str, dst: str) -> None:
    ModelName.parse(dst)  # a bad destination is a 400 before the source is even looked up
    store.copy_tag(src, dst)


def delete_model(store: Store, name: str) -> None:
    store.delete_tag(name)
