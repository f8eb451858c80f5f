"""How a model's runner is started: context size, GPU layers and the memory estimate.

``plan_load`` is the one function the hardware planner replaces: the scheduler only needs a
``LoadPlan`` whose ``spec`` (the RunnerSpec fields) decides whether two requests can share a runner.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from ollamalike.config import Config
from ollamalike.errors import BadRequest

log = logging.getLogger("ollamalike.scheduler")


def display_name(model: Any) -> str:
    name = model.name
    display = getattr(name, "display", None)
    return str(display) if display is not None else str(name)


DEFAULT_NUM_CTX = 4096
_KV_BYTES = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 1.0625, "q4_0": 0.5625, "q4_1": 0.625}


@dataclass(frozen=True)
class LoadPlan:
    """How to start a model's runner. ``spec`` holds the RunnerSpec fields: two requests whose
    specs differ cannot share a runner."""

    num_ctx: int  # per request slot
    gpu_layers: int
    size: int
    size_vram: int
    processor: str
    spec: dict[str, Any]


def plan_load(model: Any, options: dict[str, Any], config: Config, embedding: bool = False) -> LoadPlan:
    """The simple rule until ``hardware.plan_load`` takes over (swap this one function).

    num_ctx: the request/Modelfile option, else OLLAMALIKE_CONTEXT_LENGTH, else 4096, capped at
    the model's training context. size: the GGUF file plus an estimate of the KV cache.
    """
    info = getattr(model, "info", None)
    requested = options.get("num_ctx")
    if requested is not None and int(requested) < 0:
        raise BadRequest(f"invalid num_ctx {requested}: must be a positive number of tokens")
    num_ctx = int(requested or config.context_length or DEFAULT_NUM_CTX)
    train_ctx = int(getattr(info, "context_length", 0) or 0)
    if train_ctx and num_ctx > train_ctx:
        if requested or config.context_length:
            log.warning("requested context size %d is larger than %s's training context %d; using %d",
                        num_ctx, display_name(model), train_ctx, train_ctx)
        num_ctx = train_ctx
    num_ctx = max(num_ctx, 8)
    parallel = config.num_parallel
    gpu_layers = int(options.get("num_gpu", -1))
    if gpu_layers < 0:
        gpu_layers = 999  # llama.cpp clamps to the layer count; a CPU build ignores it
    try:
        file_size = os.path.getsize(model.model_path)
    except OSError:
        file_size = 0
    size = file_size + _kv_estimate(info, num_ctx * parallel, config.kv_cache_type)
    spec = {
        "model_path": str(model.model_path),
        "ctx_size": num_ctx * parallel,
        "num_parallel": parallel,
        "num_batch": int(options.get("num_batch") or 512),
        "gpu_layers": gpu_layers,
        "threads": int(options.get("num_thread") or config.num_threads or 0),
        "flash_attn": config.flash_attention,
        "use_mmap": bool(options.get("use_mmap", True)),
        "embedding": bool(embedding or getattr(info, "is_embedding_model", False)),
        "adapters": tuple(str(a) for a in (getattr(model, "adapters", None) or [])),
        "kv_cache_type": config.kv_cache_type,
    }
    return LoadPlan(num_ctx=num_ctx, gpu_layers=gpu_layers, size=size, size_vram=0, processor="100% CPU", spec=spec)


def _kv_estimate(info: Any, ctx: int, cache_type: str) -> int:
    layers = int(getattr(info, "block_count", 0) or 0)
    embd = int(getattr(info, "embedding_length", 0) or 0)
    heads = int(getattr(info, "head_count", 0) or 0)
    heads_kv = int(getattr(info, "head_count_kv", 0) or heads)
    kv_embd = embd * heads_kv // heads if heads else embd
    return int(2 * layers * ctx * kv_embd * _KV_BYTES.get(cache_type, 2.0))


def available_memory() -> int | None:
    """MemAvailable from /proc/meminfo in bytes; None where that is unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None
