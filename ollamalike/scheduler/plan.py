"""How a model's runner is started: context size, GPU layers and the memory estimate.

Two steps, both built on ``ollamalike.hardware.planner``: ``plan_load`` (every request) gives the
``LoadPlan`` whose ``spec`` (a ``RunnerSpec``) decides whether two requests can share a runner:
they can when the specs are equal; ``layout_load`` (once per load, against the memory free then)
picks the GPU layers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ollamalike import hardware
from ollamalike.config import Config
from ollamalike.errors import BadRequest
from ollamalike.hardware import planner
from ollamalike.options import PARAMETERS, Options, OptionValue, int_option
from ollamalike.remote.engine import Engine
from ollamalike.runner.spec import RunnerSpec

if TYPE_CHECKING:
    from ollamalike.library.models import ResolvedModel

log = logging.getLogger("ollamalike.scheduler")


def display_name(model: ResolvedModel) -> str:
    """The name /api/ps and the logs show: ResolvedModel.name is already the display form."""
    return model.name


@dataclass(frozen=True)
class LoadPlan:
    """How to start a model's runner: two requests whose specs differ cannot share a runner."""

    num_ctx: int  # per request slot
    gpu_layers: int
    size: int
    size_vram: int
    processor: str
    spec: RunnerSpec | Engine  # an Engine: the model is served by a remote engine (no process of ours)


def remote_plan(engine: Engine) -> LoadPlan:
    """A remote engine's "load": nothing to lay out; ``ps`` shows the engine's host as the processor."""
    return LoadPlan(num_ctx=0, gpu_layers=0, size=0, size_vram=0, processor=engine.host, spec=engine)


def plan_load(model: ResolvedModel, options: Options, config: Config, embedding: bool = False) -> LoadPlan:
    """What a request asks of a runner. It must not depend on free memory (a loaded model would
    change its own plan and reload forever): the GPU layout is chosen by ``layout_load`` at load.

    num_ctx: the request/Modelfile option, else OLLAMALIKE_CONTEXT_LENGTH, else by total VRAM as
    Ollama does, capped at the model's training context. ``spec.gpu_layers`` is the requested
    num_gpu here (-1 = auto) and the chosen count once laid out.
    """
    info = model.info
    num_ctx = planner.choose_num_ctx(info, options, config, hardware.system(config))
    parallel = config.num_parallel
    requested_gpu = int_option(options, "num_gpu")
    gpu_layers = -1 if requested_gpu is None or requested_gpu < 0 else requested_gpu
    num_batch = _num_batch(options, num_ctx, parallel)
    cache = config.kv_cache_type if config.flash_attention != "off" else "f16"
    size = planner.estimate(info, num_ctx * parallel, cache, num_batch).total
    if not info.layer_bytes:
        with contextlib.suppress(OSError):
            size += os.path.getsize(model.model_path)  # no tensor index known: the file is the weights
    size += projector_memory(model).total
    spec = RunnerSpec(
        model_path=str(model.model_path),
        model_splits=tuple(str(p) for p in model.model_splits),
        ctx_size=num_ctx * parallel,
        num_parallel=parallel,
        num_batch=num_batch,
        gpu_layers=gpu_layers,
        threads=int_option(options, "num_thread") or config.num_threads or 0,
        flash_attn=config.flash_attention,
        use_mmap=bool(options.get("use_mmap", True)),
        embedding=bool(embedding or info.is_embedding_model),
        adapters=tuple(str(a) for a in model.adapters),
        projectors=tuple(str(p) for p in model.projectors),
        kv_cache_type=config.kv_cache_type,
        main_gpu=int_option(options, "main_gpu") or 0,
        tensor_split=(),  # chosen with the GPU layout at load
        prompt_cache=0 if embedding or info.is_embedding_model else config.prompt_cache_bytes,
        speculative=config.speculative,
        draft_model_path=str(model.draft_path) if config.speculative != "off" and model.draft_path is not None else "",
    )
    return LoadPlan(num_ctx=num_ctx, gpu_layers=gpu_layers, size=size, size_vram=0, processor="100% CPU", spec=spec)


def projector_memory(model: ResolvedModel) -> planner.Projector:
    """The projector the runner loads beside the model (the first: ``RunnerSpec.projectors``), or none."""
    if not model.projectors:
        return planner.Projector(0, 0)
    try:
        return _projector_memory(str(model.projectors[0]))
    except OSError:
        return planner.Projector(0, 0)  # a missing blob: the runner's load says so


@functools.lru_cache(maxsize=64)
def _projector_memory(path: str) -> planner.Projector:
    # Per path: a projector is a content-addressed blob, never rewritten; plan_load runs per request.
    # (A missing file raises, and is not cached.)
    from ollamalike.gguf_info import read_gguf_info

    size = os.path.getsize(path)
    try:
        metadata = read_gguf_info(path).model_info
    except BadRequest:
        metadata = {}  # unreadable here: the runner's load says why; its weights are still counted
    return planner.Projector(size, planner.projector_estimate(metadata, size).graph)


def _num_batch(options: Options, num_ctx: int, parallel: int) -> int:
    """num_batch as the runner can use it: at most a slot's context (no prompt is longer; llama.cpp
    clamps to the context itself, and a larger batch only costs memory), and never fewer than one
    token per parallel sequence, which llama.cpp asserts on (the runner would abort): that is
    refused up front."""
    requested = int_option(options, "num_batch") or int(PARAMETERS["num_batch"].default)
    if requested < parallel:
        raise BadRequest(f"option 'num_batch' must be at least the number of parallel sequences ({parallel}), "
                         f"got {requested}")
    return min(requested, max(num_ctx, parallel))


def layout_load(plan: LoadPlan, model: ResolvedModel, config: Config) -> LoadPlan:
    """``plan`` with the GPU layout chosen against the memory free right now (blocking: the
    scheduler runs it in a thread). Raises ``hardware.planner.InsufficientMemory`` when it does not fit."""
    spec = plan.spec
    if isinstance(spec, Engine):
        return plan  # a remote engine: nothing here to lay out
    info = model.info
    options: dict[str, OptionValue] = {"num_ctx": plan.num_ctx, "num_batch": spec.num_batch}
    if spec.gpu_layers >= 0:
        options["num_gpu"] = spec.gpu_layers
    system = hardware.system(config, refresh=True)
    hp = planner.plan_load(info, options, system, config, num_parallel=spec.num_parallel,
                           projector=projector_memory(model))
    size = hp.size if info.layer_bytes else plan.size
    size_vram = min(hp.size_vram, size)
    processor = planner.processor_text(size, size_vram)
    log.info("%s: %d layers on the GPU, context %d x %d slots, %.2f GiB, %s", display_name(model), hp.gpu_layers,
             plan.num_ctx, spec.num_parallel, size / 2**30, processor)
    return LoadPlan(num_ctx=plan.num_ctx, gpu_layers=hp.gpu_layers, size=size, size_vram=size_vram,
                    processor=processor,
                    spec=dataclasses.replace(spec, gpu_layers=hp.gpu_layers, tensor_split=tuple(hp.tensor_split)))
