"""Creating a model: from GGUF blobs, a local GGUF (legacy Modelfile) or an existing model.

Everything is validated first (names, Modelfile, files, GGUF headers, template, parameters,
messages) without writing anything. Then blobs are written pinned against GC, the manifest is
put, and the tag moves in one transaction. If anything fails, the blobs this create wrote and
nothing references are deleted again. Blobs never hold timestamps, so the same inputs always give
the same manifest digest.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ollamalike import modelfile, options
from ollamalike.errors import BadRequest, ModelNotFound
from ollamalike.library.create_convert import (
    CheckpointInput,
    check_checkpoint,
    convert_checkpoint,
    is_checkpoint,
    local_split,
    pin_files,
    split_shards,
)
from ollamalike.library.create_paths import (
    check_regular,
    is_dir,
    local_path,
    refuse_server_path,
)
from ollamalike.library.models import Layers, encode_info, gguf_info, read_layers
from ollamalike.library.quantize import check_quantizable, quantize_model, quantize_type
from ollamalike.library.request import REMOTE, Access, CreateRequest
from ollamalike.names import ModelName
from ollamalike.remote.engine import Engine
from ollamalike.store import Pins, Store
from ollamalike.store.manifest import (
    CONFIG_MEDIA_TYPE,
    MEDIA_ADAPTER,
    MEDIA_ENGINE,
    MEDIA_LICENSE,
    MEDIA_MESSAGES,
    MEDIA_MODEL,
    MEDIA_PARAMS,
    MEDIA_PROJECTOR,
    MEDIA_SYSTEM,
    MEDIA_TEMPLATE,
    Descriptor,
    build_config,
    build_manifest,
    go_json,
)

if TYPE_CHECKING:
    from ollamalike.library.convert import Prepared
    from ollamalike.library.convert.split import MergedSplit

PROJECTOR_ARCHITECTURES = ("clip",)


@dataclass
class _Source:
    """A GGUF that becomes a layer: a local file to copy in, or a blob already in the store."""

    media: str
    info: Any
    path: Path | None = None
    digest: str | None = None
    size: int = 0


@dataclass
class _Plan:
    sources: list[_Source] = field(default_factory=list)
    base: Layers | None = None
    base_descs: list[Descriptor] = field(default_factory=list)
    base_info: Any = None
    parent: str = ""
    template: str | None = None
    system: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)
    license: list[str] = field(default_factory=list)
    quantize: str | None = None
    checkpoint: CheckpointInput | None = None  # a safetensors checkpoint still to be converted
    engine: Engine | None = None  # served by a remote engine (Modelfile ENGINE): no weights


async def _missing_base(store: Store, name: str) -> AsyncIterator[dict[str, Any]]:
    """A FROM model that is not local: pull it from its registry or Hugging Face, yielding its progress."""
    from ollamalike.config import load_config
    from ollamalike.registry.pull import pull_model

    async for status in pull_model(store, load_config(), name):
        if status.get("status") != "success":
            yield status


def _read_info(path: Path) -> Any:
    from ollamalike.gguf_info import read_gguf_info

    return read_gguf_info(path)


def _check_parameters(params: dict[str, Any]) -> dict[str, Any]:
    # Validated once, here at create; a resolved model's params are read back with Options.from_stored.
    return dict(options.Options.from_create(params))


async def _gguf_source(
    store: Store, pins: Pins, media: str, *, path: Path | None = None, digest: str | None = None
) -> _Source:
    if path is not None:
        check_regular(path, "file")
        info = await asyncio.to_thread(_read_info, path)
        return _Source(media, info, path=path)
    assert digest is not None
    # Pinned before the existence check: a GC between the check and the manifest cannot take it.
    d = pins.add(digest)
    if not store.has_blob(d):
        pins.fresh.discard(d)  # not ours to clean up if it appears meanwhile
        raise BadRequest(f"blob {d} not found: upload it with POST /api/blobs/{d} first")
    if store.take_received(d):
        # Uploaded for this create and referenced by nothing yet: a failed create drops it again.
        pins.fresh.add(d)
    info = await asyncio.to_thread(_read_info, store.blob_path(d))
    return _Source(media, info, digest=d, size=store.blob_size(d))


def _classify(sources: list[_Source], converted: bool = False) -> None:
    """Files: the one model GGUF (``converted``: it comes from a checkpoint), and projectors beside it."""
    models = []
    for s in sources:
        if s.media == MEDIA_MODEL and getattr(s.info, "architecture", "") in PROJECTOR_ARCHITECTURES:
            s.media = MEDIA_PROJECTOR
        if s.media == MEDIA_MODEL:
            models.append(s)
    if len(models) != (0 if converted else 1):
        raise BadRequest(f"expected exactly one model GGUF, got {len(models)}")
    sources.sort(key=lambda s: {MEDIA_MODEL: 0, MEDIA_PROJECTOR: 1}.get(s.media, 2))


async def _plan(store: Store, request: CreateRequest, pins: Pins, access: Access) -> tuple[_Plan, str | None]:
    """Validate everything without writing; returns the plan and a FROM name still to be fetched."""
    plan = _Plan(quantize=quantize_type(request.quantize) if request.quantize else None)
    from_name: str | None = request.from_
    files = dict(request.files)
    template, system = request.template, request.system
    license_, messages = request.license, request.messages
    params: dict[str, Any] = _check_parameters(request.parameters or {})
    adapter_sources: list[_Source] = []
    if request.modelfile is not None:
        if from_name or files:
            raise BadRequest("give either 'modelfile' or 'from'/'files', not both")
        mf = modelfile.parse(request.modelfile)
        if mf.engine is not None:
            if request.quantize:
                raise BadRequest("a model served by a remote engine (ENGINE) cannot be quantized here")
            plan.engine = mf.engine
        elif not access.server_paths:
            # A remote client: files come through /api/blobs (Ollama's rule); no path, no ~, no stat.
            for spec in (mf.from_, *mf.adapters):
                refuse_server_path(spec, access.keys_on)
            from_name = mf.from_
        else:
            base_dir = Path(request.path).expanduser().parent if request.path else Path.cwd()
            local = local_path(mf.from_, base_dir)
            if local is None:
                from_name = mf.from_
            elif is_dir(local) and not local.name.lower().endswith(".gguf"):
                plan.checkpoint = CheckpointInput(directory=local)
            elif (split := local_split(local)) is not None:
                plan.checkpoint = split
            else:
                plan.sources.append(await _gguf_source(store, pins, MEDIA_MODEL, path=local))
            for spec in mf.adapters:
                adapter = Path(spec).expanduser()
                path = adapter if adapter.is_absolute() else base_dir / adapter
                adapter_sources.append(await _gguf_source(store, pins, MEDIA_ADAPTER, path=path))
        template = template if template is not None else (mf.template or None)
        system = system if system is not None else (mf.system or None)
        license_ = license_ if license_ is not None else (mf.license or None)
        messages = messages if messages is not None else (mf.messages or None)
        params = {**_check_parameters(mf.params), **params}
    elif from_name and files:
        raise BadRequest("give either 'from' or 'files', not both")
    elif not from_name and not files:
        raise BadRequest("neither 'from' or 'files' was specified")
    if from_name is not None:
        ModelName.parse(from_name)
    if files and (is_checkpoint(files) or (shards := split_shards(files)) is not None):
        plan.checkpoint = pin_files(store, pins, files, None if is_checkpoint(files) else shards)
        files = {}
    for fname in sorted(files):
        plan.sources.append(await _gguf_source(store, pins, MEDIA_MODEL, digest=files[fname]))
    for fname in sorted(request.adapters):
        adapter_sources.append(await _gguf_source(store, pins, MEDIA_ADAPTER, digest=request.adapters[fname]))
    if plan.sources or plan.checkpoint is not None:
        _classify(plan.sources, converted=plan.checkpoint is not None)
    plan.sources.extend(adapter_sources)
    if template is not None:
        from ollamalike.template import check_template

        check_template(template)
    plan.template, plan.system = template, system
    plan.parameters = params
    plan.messages = list(messages or [])
    plan.license = list(license_ or [])
    return plan, from_name


def _inherit(store: Store, plan: _Plan, from_name: str, pins: Pins) -> None:
    """Take the base model's layers; the request's fields override (parameters merge key by key)."""
    _, manifest, _ = store.get_manifest(from_name)
    for layer in manifest["layers"]:
        pins.add(layer["digest"])
    base = read_layers(store, manifest)
    if base.engine is not None and base.model is None:
        if plan.quantize:
            raise BadRequest(f"model '{from_name}' is served by a remote engine: it cannot be quantized here")
        plan.engine = base.engine  # FROM a remote engine's model: the same engine, new text layers
    elif base.model is None:
        raise BadRequest(f"model '{from_name}' has no model layer")
    plan.base = base
    plan.parent = ModelName.parse(from_name).display
    keep = (MEDIA_MODEL, MEDIA_PROJECTOR, MEDIA_ADAPTER)
    plan.base_descs = [
        Descriptor(layer["mediaType"], layer["digest"], layer["size"])
        for layer in manifest["layers"]
        if layer["mediaType"] in keep
    ]
    plan.base_info = gguf_info(store, base.model) if base.model is not None else None
    plan.template = plan.template if plan.template is not None else base.template
    plan.system = plan.system if plan.system is not None else base.system
    plan.parameters = {**base.parameters, **plan.parameters}
    plan.messages = plan.messages or list(base.messages)
    plan.license = plan.license or list(base.license)


async def create_model(
    store: Store, name: str, request: CreateRequest, access: Access = REMOTE
) -> AsyncIterator[dict[str, Any]]:
    """/api/create as a stream of Ollama's status objects; the last one is {"status": "success"}.

    ``access`` says whether a Modelfile may name files on this machine: only for a local client (the
    HTTP handler decides from the peer and the key; in-process callers pass ``LOCAL``)."""
    target = ModelName.parse(name)
    with store.pin() as pins, contextlib.ExitStack() as scratch:
        try:
            plan, from_name = await _plan(store, request, pins, access)
            if plan.checkpoint is not None:
                prepared = await check_checkpoint(store, plan.checkpoint, scratch)
                yield {"status": "merging split GGUF" if plan.checkpoint.shards else "converting model"}
                plan.sources.insert(0, await _converted_source(store, prepared, scratch))
            if from_name is not None:
                try:
                    store.get_manifest(from_name)
                except ModelNotFound:
                    async for status in _missing_base(store, from_name):
                        yield status
                _inherit(store, plan, from_name, pins)
            _check_kinds(plan)
            if plan.quantize:
                check_quantizable(_model_info(plan))
            if plan.sources:
                yield {"status": "parsing GGUF"}
            async for status in _write(store, target, plan, pins):
                yield status
        except BaseException:
            # Blobs this create wrote and nothing references go again (the pins must drop first).
            fresh = set(pins.fresh)
            pins.release()
            store.collect(fresh)
            raise
    yield {"status": "success"}


async def _converted_source(store: Store, prepared: Prepared | MergedSplit, scratch: contextlib.ExitStack) -> _Source:
    """The checked checkpoint converted to a scratch GGUF, then a local model file like any other."""
    path = await convert_checkpoint(store, prepared, scratch)
    info = await asyncio.to_thread(_read_info, path)
    return _Source(MEDIA_MODEL, info, path=path)


def _gguf_type(info: Any) -> str:
    return str((getattr(info, "model_info", None) or {}).get("general.type") or "model")


def _check_kinds(plan: _Plan) -> None:
    """A LoRA adapter given as the model, or a model given as an adapter, would only fail at load time."""
    model = _model_info(plan)
    if _gguf_type(model) == "adapter":
        raise BadRequest("the model file is a LoRA adapter: give it as ADAPTER (or 'adapters') on top of a model")
    for src in plan.sources:
        if src.media != MEDIA_ADAPTER:
            continue
        meta = getattr(src.info, "model_info", None) or {}
        if _gguf_type(src.info) != "adapter" and "adapter.type" not in meta:
            raise BadRequest(f"adapter file is not a LoRA adapter (its general.type is {_gguf_type(src.info)!r})")
        arch, base_arch = getattr(src.info, "architecture", ""), getattr(model, "architecture", "")
        if arch and base_arch and arch != base_arch:
            raise BadRequest(f"adapter is for architecture {arch!r} but the model is {base_arch!r}")


def _model_info(plan: _Plan) -> Any:
    """GGUF info of the model the new one is built on: a new model file, else the base model's."""
    for src in plan.sources:
        if src.media == MEDIA_MODEL:
            return src.info
    return plan.base_info


async def _write(store: Store, target: ModelName, plan: _Plan, pins: Pins) -> AsyncIterator[dict[str, Any]]:
    layers: list[Descriptor] = []
    model_info = plan.base_info
    for desc in plan.base_descs:
        if not store.has_blob(desc.digest):
            raise BadRequest(f"base model layer {desc.digest} is missing from the store")
        if desc.media_type == MEDIA_MODEL and plan.quantize and not any(s.media == MEDIA_MODEL for s in plan.sources):
            yield {"status": f"quantizing {model_info.file_type} model to {plan.quantize}"}
            digest, size, model_info = await quantize_model(store, pins, store.blob_path(desc.digest), plan.quantize)
            desc = Descriptor(MEDIA_MODEL, digest, size)
        layers.append(desc)
    for src in plan.sources:
        if src.media == MEDIA_MODEL and plan.quantize:
            # Straight from the source file: an F16 original is never copied into the store.
            source = src.path if src.path is not None else store.blob_path(src.digest or "")
            yield {"status": f"quantizing {src.info.file_type} model to {plan.quantize}"}
            digest, size, src.info = await quantize_model(store, pins, source, plan.quantize)
        elif src.path is not None:
            digest, size = await asyncio.to_thread(store.add_blob_file, src.path, None, pins)
        else:
            assert src.digest is not None
            digest, size = pins.add(src.digest), src.size
            if not store.has_blob(digest):
                raise BadRequest(f"blob {digest} not found")
        if src.media == MEDIA_MODEL:
            # A new model GGUF replaces the base's model (and its projector/adapters don't fit it).
            layers = [d for d in layers if d.media_type not in (MEDIA_MODEL, MEDIA_PROJECTOR)]
            model_info = src.info
        layers.append(Descriptor(src.media, digest, size))
    texts: list[tuple[str, bytes]] = []
    if plan.engine is not None:
        texts.append((MEDIA_ENGINE, plan.engine.to_layer()))
    if plan.template is not None:
        texts.append((MEDIA_TEMPLATE, plan.template.encode()))
    if plan.system is not None:
        texts.append((MEDIA_SYSTEM, plan.system.encode()))
    texts += [(MEDIA_LICENSE, text.encode()) for text in plan.license]
    if plan.parameters:
        texts.append((MEDIA_PARAMS, go_json(plan.parameters)))
    if plan.messages:
        texts.append((MEDIA_MESSAGES, go_json(plan.messages)))
    for media, data in texts:
        digest, size = store.add_blob_bytes(data, pins=pins)
        layers.append(Descriptor(media, digest, size))
    for desc in layers:
        verb = "creating new" if desc.digest in pins.fresh else "using existing"
        yield {"status": f"{verb} layer {desc.digest}"}
    family = getattr(model_info, "architecture", "") or ""
    families = [family] if family else []
    if any(d.media_type == MEDIA_PROJECTOR for d in layers) and "clip" not in families:
        families.append("clip")
    config = build_config(
        model_format="engine" if plan.engine is not None else "gguf",
        model_family=family,
        model_families=families,
        model_type=getattr(model_info, "parameter_size", "") or "",
        file_type=getattr(model_info, "file_type", "") or "",
        diff_ids=[d.digest for d in layers],
    )
    config_digest, config_size = store.add_blob_bytes(config, pins=pins)
    manifest = build_manifest(Descriptor(CONFIG_MEDIA_TYPE, config_digest, config_size), layers)
    yield {"status": "writing manifest"}
    await asyncio.to_thread(store.put_manifest, target, manifest, plan.parent)
    model_layer = next((d.digest for d in layers if d.media_type == MEDIA_MODEL), None)
    if model_info is not None and model_layer is not None:
        # Not representable as JSON: resolve parses it once instead.
        with contextlib.suppress(TypeError):
            store.cache_info(model_layer, encode_info(model_info))
