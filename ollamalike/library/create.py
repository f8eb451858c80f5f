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
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ollamalike import options
from ollamalike.errors import BadRequest, ModelNotFound
from ollamalike.library.create_convert import (
    CheckpointInput,
    check_adapters,
    check_checkpoint,
    convert_adapter,
    is_checkpoint,
    is_lora_files,
    pin_files,
    split_by_content,
    split_shards,
)
from ollamalike.library.create_modelfile import resolve_modelfile
from ollamalike.library.create_sources import (
    Source,
    check_requires,
    converted_source,
    draft_source,
    gguf_source,
    gguf_type,
    read_info,
    split_source,
    stored,
)
from ollamalike.library.info_cache import encode_info, gguf_info
from ollamalike.library.models import Layers, read_config, read_layers
from ollamalike.library.projector import is_projector
from ollamalike.library.quantize import check_quantizable, quantize_model, quantize_type
from ollamalike.library.request import REMOTE, Access, CreateRequest
from ollamalike.names import ModelName
from ollamalike.remote.engine import Engine
from ollamalike.store import Pins, Store
from ollamalike.store.manifest import (
    CONFIG_MEDIA_TYPE,
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
    Descriptor,
    build_config,
    build_manifest,
    go_json,
)

if TYPE_CHECKING:
    from ollamalike.gguf_info import GGUFInfo
    from ollamalike.jsontypes import JSONObject

@dataclass
class _Plan:
    sources: list[Source] = field(default_factory=list)
    base: Layers | None = None
    base_descs: list[Descriptor] = field(default_factory=list)
    base_info: GGUFInfo | None = None
    parent: str = ""
    template: str | None = None
    system: str | None = None
    parameters: dict[str, object] = field(default_factory=dict)  # checked (options.Options.from_create)
    messages: Sequence[Mapping[str, object]] = field(default_factory=list)
    license: list[str] = field(default_factory=list)
    quantize: str | None = None
    checkpoint: CheckpointInput | None = None  # a safetensors checkpoint still to be converted
    renderer: str | None = None
    parser: str | None = None
    requires: str | None = None
    draft: Source | None = None  # a new draft layer (DRAFT, draft_files, draft)
    draft_quantize: str | None = None
    capabilities: list[str] = field(default_factory=list)  # declared by a base's config, carried over
    loras: list[CheckpointInput] = field(default_factory=list)  # PEFT adapters, converted once the base is known
    engine: Engine | None = None  # served by a remote engine (Modelfile ENGINE): no weights


async def _missing_base(store: Store, name: str) -> AsyncIterator[JSONObject]:
    """A FROM model that is not local: pull it from its registry or Hugging Face, yielding its progress."""
    from ollamalike.config import load_config
    from ollamalike.registry.pull import pull_model

    async for status in pull_model(store, load_config(), name):
        if status.get("status") != "success":
            yield status


def _check_parameters(params: Mapping[str, object]) -> dict[str, object]:
    # Validated once, here at create; a resolved model's params are read back with Options.from_stored.
    return dict(options.Options.from_create(params))


def _classify(sources: list[Source], converted: bool = False) -> None:
    """Files: the one model GGUF (``converted``: it comes from a checkpoint), and projectors beside it."""
    models = []
    for s in sources:
        if s.media == MEDIA_MODEL and is_projector(s.info):
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
    template, system = request.template, ("" if request.clear_system else request.system)
    license_, messages = request.license, request.messages
    params = _check_parameters(request.parameters or {})
    adapter_sources: list[Source] = []
    draft_file: Path | None = None
    draft_name = request.draft
    if request.modelfile is not None:
        if from_name or files:
            raise BadRequest("give either 'modelfile' or 'from'/'files', not both")
        # Off the loop: it stats the files and reads shard headers.
        found = await asyncio.to_thread(resolve_modelfile, request, access)
        mf = found.mf
        if mf.engine is not None:
            if request.quantize:
                raise BadRequest("a model served by a remote engine (ENGINE) cannot be quantized here")
            plan.engine = mf.engine
        from_name, plan.checkpoint = found.from_name, found.checkpoint
        for path in found.model_files:
            plan.sources.append(await gguf_source(store, pins, MEDIA_MODEL, path=path))
        for path in found.adapter_files:
            adapter_sources.append(await gguf_source(store, pins, MEDIA_ADAPTER, path=path))
        plan.loras += [CheckpointInput(directory=path) for path in found.lora_dirs]
        if not (request.draft_files or draft_name):
            draft_file, draft_name = found.draft_file, found.draft_name
        template = template if template is not None else (mf.template or None)
        # SYSTEM "" is kept as "": it clears the base model's system prompt.
        system = system if system is not None else mf.system
        license_ = license_ if license_ is not None else (mf.license or None)
        messages = messages if messages is not None else (mf.messages or None)
        params = {**_check_parameters(mf.params), **params}
        plan.renderer, plan.parser, plan.requires = mf.renderer, mf.parser, mf.requires
    elif from_name and files:
        raise BadRequest("give either 'from' or 'files', not both")
    elif not from_name and not files:
        raise BadRequest("neither 'from' or 'files' was specified")
    if from_name is not None:
        ModelName.parse(from_name)
    if files and (is_checkpoint(files) or (shards := split_shards(files)) is not None):
        plan.checkpoint = pin_files(store, pins, files, None if is_checkpoint(files) else shards)
        files = {}
    elif len(files) > 1 and (shards := await asyncio.to_thread(split_by_content, store, files)) is not None:
        plan.checkpoint = pin_files(store, pins, {n: files[n] for n in shards}, shards)
        files = {n: d for n, d in files.items() if n not in shards}  # a projector beside the shards
    for fname in sorted(files):
        plan.sources.append(await gguf_source(store, pins, MEDIA_MODEL, digest=files[fname]))
    if is_lora_files(request.adapters):  # a PEFT directory's uploaded files
        plan.loras.append(pin_files(store, pins, request.adapters))
    else:
        for fname in sorted(request.adapters):
            adapter_sources.append(await gguf_source(store, pins, MEDIA_ADAPTER, digest=request.adapters[fname]))
    if plan.sources or plan.checkpoint is not None:
        _classify(plan.sources, converted=plan.checkpoint is not None)
    for src in adapter_sources:
        # ADAPTER (or the API's adapters) naming a CLIP GGUF gives the model its projector.
        if is_projector(src.info):
            src.media = MEDIA_PROJECTOR
    plan.sources.extend(adapter_sources)
    plan.renderer = request.renderer or plan.renderer
    if plan.renderer:  # one given anew; an inherited one (a pulled model's) is the base's business
        from ollamalike.template.renderers import check_renderer

        check_renderer(plan.renderer)
    plan.parser = request.parser or plan.parser
    plan.requires = request.requires or plan.requires
    check_requires(plan.requires)
    plan.draft = await draft_source(store, pins, request, draft_file, draft_name)
    if request.draft_quantize:
        if plan.draft is None:
            raise BadRequest("--draft-quantize requires a DRAFT model")
        plan.draft_quantize = quantize_type(request.draft_quantize)
        if plan.draft.info.file_type not in ("F32", "F16", "BF16"):
            raise BadRequest(f"draft quantization requires an unquantized draft model, got {plan.draft.info.file_type}")
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
    keep = (MEDIA_MODEL, MEDIA_PROJECTOR, MEDIA_ADAPTER, MEDIA_DRAFT)
    plan.base_descs = [
        Descriptor(layer["mediaType"], layer["digest"], layer["size"])
        for layer in manifest["layers"]
        if layer["mediaType"] in keep
    ]
    if base.model_splits and plan.quantize:
        raise BadRequest(f"model '{from_name}' is a split GGUF: quantize it when creating it from its shards")
    plan.base_info = gguf_info(store, base.model, base.model_splits) if base.model is not None else None
    plan.template = plan.template if plan.template is not None else base.template
    plan.system = plan.system if plan.system is not None else base.system
    plan.parameters = {**base.parameters, **plan.parameters}
    plan.messages = plan.messages or list(base.messages)
    plan.license = plan.license or list(base.license)
    # As in Ollama, the base's renderer, parser and minimum version carry over unless given anew.
    base_config = read_config(store, manifest)
    plan.renderer = plan.renderer or base_config.renderer
    plan.parser = plan.parser or base_config.parser
    plan.requires = plan.requires or base_config.requires
    plan.capabilities = list(base_config.capabilities)


async def create_model(
    store: Store, name: str, request: CreateRequest, access: Access = REMOTE
) -> AsyncIterator[JSONObject]:
    """/api/create as a stream of Ollama's status objects; the last one is {"status": "success"}.

    ``access`` says whether a Modelfile may name files on this machine: only for a local client (the
    HTTP handler decides from the peer and the key; in-process callers pass ``LOCAL``)."""
    target = ModelName.parse(name)
    with store.pin() as pins, contextlib.ExitStack() as scratch:
        try:
            plan, from_name = await _plan(store, request, pins, access)
            if plan.checkpoint is not None:
                prepared = await check_checkpoint(store, plan.checkpoint, scratch)
                if plan.checkpoint.shards and not plan.quantize:
                    # Stored as they are, one model layer per shard; the runner loads them as a split.
                    plan.sources.insert(0, await asyncio.to_thread(split_source, store, plan.checkpoint))
                else:  # a checkpoint, or shards to quantize (llama.cpp's quantizer wants one named file)
                    yield {"status": "merging split GGUF" if plan.checkpoint.shards else "converting model"}
                    plan.sources.insert(0, await converted_source(store, prepared, scratch))
            if from_name is not None:
                try:
                    store.get_manifest(from_name)
                except ModelNotFound:
                    async for status in _missing_base(store, from_name):
                        yield status
                _inherit(store, plan, from_name, pins)
            if plan.loras:
                prepared_loras = await check_adapters(store, plan.loras, _model_paths(store, plan), scratch)
                yield {"status": "converting adapter"}
                for lora in prepared_loras:
                    path = await convert_adapter(store, lora, scratch)
                    info = await asyncio.to_thread(read_info, path)
                    plan.sources.append(Source(MEDIA_ADAPTER, info, path=path))
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




def _check_kinds(plan: _Plan) -> None:
    """A LoRA adapter given as the model, or a model given as an adapter, would only fail at load time."""
    model = _model_info(plan)
    if gguf_type(model) == "adapter":
        raise BadRequest("the model file is a LoRA adapter: give it as ADAPTER (or 'adapters') on top of a model")
    for src in plan.sources:
        if src.media != MEDIA_ADAPTER:
            continue
        if gguf_type(src.info) != "adapter" and "adapter.type" not in src.info.model_info:
            raise BadRequest(f"adapter file is not a LoRA adapter (its general.type is {gguf_type(src.info)!r})")
        arch, base_arch = src.info.architecture, model.architecture if model is not None else ""
        if arch and base_arch and arch != base_arch:
            raise BadRequest(f"adapter is for architecture {arch!r} but the model is {base_arch!r}")


def _model_paths(store: Store, plan: _Plan) -> list[Path]:
    """The GGUF file(s, for a split) of the model an adapter goes on: a new model file, else the base's blobs."""
    for src in plan.sources:
        if src.media == MEDIA_MODEL:
            return [s.path if s.path is not None else store.blob_path(s.digest or "") for s in (src, *src.shards)]
    if plan.base is None or plan.base.model is None:
        raise BadRequest("an ADAPTER needs a base model: give FROM")
    return [store.blob_path(d) for d in (plan.base.model, *plan.base.model_splits)]


def _model_info(plan: _Plan) -> GGUFInfo | None:
    """GGUF info of the model the new one is built on: a new model file, else the base model's."""
    for src in plan.sources:
        if src.media == MEDIA_MODEL:
            return src.info
    return plan.base_info


async def _write_draft(store: Store, plan: _Plan, pins: Pins, layers: list[Descriptor]) -> str | None:
    """Put the new draft layer in place of the base's (if any); returns the draft's architecture."""
    src = plan.draft
    if src is None:
        base = next((d for d in layers if d.media_type == MEDIA_DRAFT), None)
        return None if base is None else gguf_info(store, base.digest).architecture
    source = src.path if src.path is not None else store.blob_path(src.digest or "")
    if plan.draft_quantize:
        digest, size, src.info = await quantize_model(store, pins, source, plan.draft_quantize)
    elif src.path is not None:
        digest, size = await asyncio.to_thread(store.add_blob_file, src.path, None, pins)
    else:
        digest, size = pins.add(src.digest or ""), src.size
    if any(d.media_type == MEDIA_MODEL and d.digest == digest for d in layers):
        # Pointless for speculative decoding, and show --modelfile could not write it back (DRAFT = FROM).
        raise BadRequest("the draft model is the model itself: DRAFT must name a different, smaller model")
    layers[:] = [d for d in layers if d.media_type != MEDIA_DRAFT]
    layers.append(Descriptor(MEDIA_DRAFT, digest, size))
    return str(src.info.architecture)


async def _write(store: Store, target: ModelName, plan: _Plan, pins: Pins) -> AsyncIterator[JSONObject]:
    layers: list[Descriptor] = []
    model_info = plan.base_info
    for desc in plan.base_descs:
        if not store.has_blob(desc.digest):
            raise BadRequest(f"base model layer {desc.digest} is missing from the store")
        if desc.media_type == MEDIA_MODEL and plan.quantize and not any(s.media == MEDIA_MODEL for s in plan.sources):
            kind = model_info.file_type if model_info is not None else "unknown"
            yield {"status": f"quantizing {kind} model to {plan.quantize}"}
            digest, size, model_info = await quantize_model(store, pins, store.blob_path(desc.digest), plan.quantize)
            desc = Descriptor(MEDIA_MODEL, digest, size)
        layers.append(desc)
    for src in plan.sources:
        if src.media == MEDIA_MODEL and plan.quantize:
            # Straight from the source file: an F16 original is never copied into the store.
            source = src.path if src.path is not None else store.blob_path(src.digest or "")
            yield {"status": f"quantizing {src.info.file_type} model to {plan.quantize}"}
            digest, size, src.info = await quantize_model(store, pins, source, plan.quantize)
        else:
            digest, size = await stored(store, src, pins)
        if src.media == MEDIA_MODEL:
            # A new model GGUF replaces the base's model (and its projector/adapters don't fit it).
            layers = [d for d in layers if d.media_type not in (MEDIA_MODEL, MEDIA_PROJECTOR)]
            model_info = src.info
        layers.append(Descriptor(src.media, digest, size))
        for shard in src.shards:
            layers.append(Descriptor(MEDIA_MODEL, *await stored(store, shard, pins)))
    if plan.draft is not None and plan.draft_quantize:
        yield {"status": f"quantizing {plan.draft.info.file_type} draft model to {plan.draft_quantize}"}
    draft_arch = await _write_draft(store, plan, pins, layers)
    texts: list[tuple[str, bytes]] = []
    if plan.engine is not None:
        texts.append((MEDIA_ENGINE, plan.engine.to_layer()))
    if plan.template is not None:
        texts.append((MEDIA_TEMPLATE, plan.template.encode()))
    if plan.system:  # "" (SYSTEM "") clears an inherited system prompt
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
    family = model_info.architecture if model_info is not None else ""
    families = [family] if family else []
    if any(d.media_type == MEDIA_PROJECTOR for d in layers) and "clip" not in families:
        families.append("clip")
    config = build_config(
        model_format="engine" if plan.engine is not None else "gguf",
        model_family=family,
        model_families=families,
        model_type=model_info.parameter_size if model_info is not None else "",
        file_type=model_info.file_type if model_info is not None else "",
        diff_ids=[d.digest for d in layers],
        renderer=plan.renderer,
        parser=plan.parser,
        requires=plan.requires,
        draft_architecture=draft_arch,
        capabilities=plan.capabilities,
    )
    config_digest, config_size = store.add_blob_bytes(config, pins=pins)
    manifest = build_manifest(Descriptor(CONFIG_MEDIA_TYPE, config_digest, config_size), layers)
    yield {"status": "writing manifest"}
    await asyncio.to_thread(store.put_manifest, target, manifest, plan.parent)
    model_layers = [d.digest for d in layers if d.media_type == MEDIA_MODEL]
    if model_info is not None and len(model_layers) == 1:  # a split's info is not one blob's
        # Not representable as JSON: resolve parses it once instead.
        with contextlib.suppress(TypeError):
            store.cache_info(model_layers[0], encode_info(model_info))

