"""The memory planner: how much a model needs and how many of its layers go to which GPU.

The estimate follows Ollama's: each repeating layer's weights plus its share of the KV cache
(n_ctx x (n_embd_k_gqa + n_embd_v_gqa) at the cache type's bytes per element), the non-layer
tensors (the token embedding stays in RAM), the output layer, and the compute graph (proportional
to the batch and to n_ctx x heads or the vocabulary). Layers fill the GPUs with the most free memory
first after a reserve per GPU; what does not fit runs on the CPU. A model that fits neither is
refused with the sizes in the message. ``num_gpu`` overrides the layer count (-1 = auto, 0 = CPU).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from ollamalike.config import Config
from ollamalike.errors import BadRequest, InternalError
from ollamalike.hardware import SystemInfo
from ollamalike.hardware.discovery import GIB, GPU, MIB
from ollamalike.options import OptionValue, int_option

log = logging.getLogger("ollamalike.hardware")


class ModelShape(Protocol):
    """What the planner reads of a model's GGUF metadata (``gguf_info.GGUFInfo`` is one)."""

    @property
    def architecture(self) -> str: ...
    @property
    def context_length(self) -> int | None: ...
    @property
    def embedding_length(self) -> int | None: ...
    @property
    def block_count(self) -> int | None: ...
    @property
    def head_count(self) -> int | None: ...
    @property
    def head_count_kv(self) -> int | None: ...
    @property
    def model_info(self) -> Mapping[str, object]: ...
    @property
    def layer_bytes(self) -> Sequence[int]: ...
    @property
    def non_layer_bytes(self) -> int: ...
    @property
    def output_bytes(self) -> int: ...
    @property
    def tensor_count(self) -> int: ...
    @property
    def file_size(self) -> int: ...


# Bytes per KV cache element: ggml's block sizes (q8_0: 34 bytes per 32 values, q4_0: 18).
KV_BYTES = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32, "q4_1": 20 / 32}
# Kept free on each GPU besides OLLAMALIKE_GPU_OVERHEAD: the driver's and llama.cpp's own buffers.
MINIMUM_GPU_RESERVE = {"cuda": 457 * MIB, "rocm": 457 * MIB, "metal": 512 * MIB}
DEFAULT_VOCAB = 32000
DEFAULT_BATCH = 512
MIN_CTX = 8
MAX_LAYERS = 4096  # the deepest real models have a few hundred repeating layers
AUDIO_FRAMES = 3000  # mel frames of one 30 s window (Whisper-style encoders take one at a time)
# Dynamic-resolution projectors (any image size, up to a token limit): mtmd reserves the compute of a
# warmup image of this many merged tokens per side (llama.cpp's choice for the Qwen-VL family).
DYNAMIC_PROJECTORS = ("qwen2vl_merger", "qwen2.5vl_merger", "qwen3vl_merger")
DYNAMIC_WARMUP_SIDE = 46


class InsufficientMemory(InternalError):
    """The model fits in neither the free RAM nor RAM plus VRAM (Ollama answers 500 too)."""


@dataclass(frozen=True)
class LoadPlan:
    gpu_layers: int  # llama.cpp n_gpu_layers: repeating layers offloaded, +1 when the output layer is too
    num_ctx: int  # per request slot
    size: int  # bytes, everything
    size_vram: int  # bytes of ``size`` on GPUs
    tensor_split: tuple[float, ...]  # share of the offloaded layers per usable GPU, in device order; () for one
    processor: str  # "100% GPU", "48%/52% CPU/GPU", "100% CPU" as ``ollama ps`` shows it


@dataclass(frozen=True)
class Estimate:
    layers: tuple[int, ...]  # bytes per repeating layer: weights + KV cache
    non_layer: int  # token embedding, norms … (stays in RAM)
    output: int  # the output layer
    graph: int  # compute buffers
    kv: int

    @property
    def total(self) -> int:
        return sum(self.layers) + self.non_layer + self.output + self.graph


@dataclass(frozen=True)
class Projector:
    """A projector (mmproj) loaded beside the model: its weights and the compute buffer of encoding one image.

    mtmd puts it on the first GPU whenever any layer is offloaded, else in RAM (``runner.vision``)."""

    weights: int
    graph: int

    @property
    def total(self) -> int:
        return self.weights + self.graph


def projector_estimate(metadata: Mapping[str, object], file_size: int) -> Projector:
    """A projector's memory from its GGUF: the file is its weights (mtmd reads all of it); the graph is one
    image through one encoder layer: the f32 input pixels, the patches' activations (q, k, v, the output and
    the feed-forward) and, without flash attention (the runner's mtmd setting), every head's
    patches x patches attention scores. Audio encoders: one 30 s window of mel frames likewise. A
    dynamic-resolution projector (``DYNAMIC_PROJECTORS``) is sized by mtmd's warmup image, not
    ``image_size``."""
    def num(key: str) -> int:
        value = metadata.get(key)
        return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0

    graph = 0
    for kind in ("vision", "audio"):
        embd, heads = num(f"clip.{kind}.embedding_length"), num(f"clip.{kind}.attention.head_count")
        ff = num(f"clip.{kind}.feed_forward_length")
        if kind == "vision":
            size, patch = num("clip.vision.image_size"), num("clip.vision.patch_size")
            if metadata.get("clip.projector_type") in DYNAMIC_PROJECTORS:
                size = DYNAMIC_WARMUP_SIDE * (num("clip.vision.spatial_merge_size") or 2) * patch
            positions = (size // patch) ** 2 + 1 if size and patch else 0  # + a class token
            inputs = 3 * size * size
        else:
            bins = num("clip.audio.num_mel_bins")
            positions, inputs = (AUDIO_FRAMES // 2, AUDIO_FRAMES * bins) if bins else (0, 0)
        if positions and embd:
            graph = max(graph, 4 * (inputs + positions * (4 * embd + ff) + positions * positions * max(1, heads)))
    return Projector(max(0, file_size), graph)


def processor_text(size: int, size_vram: int) -> str:
    if size_vram <= 0 or size <= 0:
        return "100% CPU"
    if size_vram >= size:
        return "100% GPU"
    gpu = round(size_vram * 100 / size)
    return f"{100 - gpu}%/{gpu}% CPU/GPU"


def default_num_ctx(system: SystemInfo) -> int:
    """Ollama's VRAM tiers (with its slightly lower 23/47 GiB thresholds for rounding)."""
    vram = sum(g.total for g in system.usable_gpus)
    if vram >= 47 * GIB:
        return 262144
    if vram >= 23 * GIB:
        return 32768
    return 4096


def choose_num_ctx(info: ModelShape, options: Mapping[str, OptionValue], config: Config, system: SystemInfo) -> int:
    """Per-slot context: num_ctx option, else OLLAMALIKE_CONTEXT_LENGTH, else by VRAM; capped at training."""
    requested = int_option(options, "num_ctx")
    if requested is not None and requested < 0:
        raise BadRequest(f"invalid num_ctx {requested}: must be a positive number of tokens")
    num_ctx = int(requested or config.context_length or default_num_ctx(system))
    train = info.context_length or 0
    if train and num_ctx > train:
        if requested or config.context_length:
            log.warning("requested context size %d is larger than the model's training context %d; using %d",
                        num_ctx, train, train)
        num_ctx = train
    return max(num_ctx, MIN_CTX)


def _model_value(info: ModelShape, suffix: str) -> int:
    value = info.model_info.get(f"{info.architecture}.{suffix}")
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def _vocab_size(info: ModelShape) -> int:
    tokens = info.model_info.get("tokenizer.ggml.tokens")
    if isinstance(tokens, list) and tokens:
        return len(tokens)
    return _model_value(info, "vocab_size") or DEFAULT_VOCAB


def estimate(info: ModelShape, ctx_total: int, cache_type: str = "f16", batch: int = DEFAULT_BATCH) -> Estimate:
    """Memory for ``ctx_total`` tokens of KV cache (num_ctx x num_parallel)."""
    n_layer = info.block_count or 0
    embd = info.embedding_length or 0
    heads = info.head_count or 0
    heads_kv = info.head_count_kv or heads
    head_k = _model_value(info, "attention.key_length") or (embd // heads if heads else 0)
    head_v = _model_value(info, "attention.value_length") or head_k
    kv_layer = int(ctx_total * (head_k + head_v) * heads_kv * KV_BYTES.get(cache_type, 2.0))
    weights = list(info.layer_bytes)
    # block_count comes from the file: the work done here is bounded by the tensors actually present
    # (gguf_info refuses a block_count beyond them; this guards any other caller).
    limit = len(weights) if weights else info.tensor_count or MAX_LAYERS
    n_layer = min(n_layer, limit, MAX_LAYERS)
    if len(weights) < n_layer:
        weights += [0] * (n_layer - len(weights))
    output = info.output_bytes
    non_layer = info.non_layer_bytes
    if not weights and not non_layer:
        non_layer = info.file_size  # no tensor index: the file is the weights
    vocab = _vocab_size(info)
    graph = max(4 * batch * (1 + 4 * embd + ctx_total * (1 + heads)), 4 * batch * (embd + vocab))
    layers = tuple(w + kv_layer for w in weights[:n_layer] or weights)
    return Estimate(layers, max(0, non_layer - output), output, graph, kv_layer * len(layers))


def plan_load(info: ModelShape, options: Mapping[str, OptionValue], system: SystemInfo, config: Config,
              num_parallel: int | None = None, projector: Projector | None = None) -> LoadPlan:
    """Choose num_ctx and the GPU layout for loading ``info`` (a GGUFInfo) with ``options``.

    ``projector``: loaded beside the model, on the first GPU when any layer is offloaded (so the layers
    that fit are counted after it), else in RAM. One that does not fit on that GPU keeps the whole
    model on the CPU (mtmd would put it there all the same)."""
    num_ctx = choose_num_ctx(info, options, config, system)
    parallel = num_parallel or config.num_parallel
    cache = config.kv_cache_type if config.flash_attention != "off" else "f16"  # quantized KV needs flash attention
    est = estimate(info, num_ctx * parallel, cache, int_option(options, "num_batch") or DEFAULT_BATCH)
    gpus = sorted(system.usable_gpus, key=lambda g: g.free, reverse=True)
    num_gpu = int_option(options, "num_gpu")
    requested = -1 if num_gpu is None else num_gpu
    n_layer = len(est.layers)
    beside = projector.total if projector else 0
    if requested == 0 or not gpus or n_layer == 0:
        gpu_layers, placed = 0, {}
    elif requested > 0:
        gpu_layers = min(requested, n_layer + 1)
        placed = _split(est, gpus, gpu_layers)
    else:
        gpu_layers, placed = _fit(est, gpus, config, (system.usable_gpus[0].id, beside) if beside else None)
    used = sum(1 for n in placed.values() if n)
    size = est.total + est.graph * max(0, used - 1) + beside  # every GPU holding layers has its own graph
    size_vram = 0
    if gpu_layers > n_layer:
        size_vram = size  # all on the GPUs; the token embedding lookup is too small to matter (Ollama: 100% GPU)
    elif gpu_layers:
        size_vram = sum(est.layers[n_layer - gpu_layers:]) + est.graph * used + beside
    _check_ram(size - size_vram, system, size)
    order = [g for g in system.usable_gpus if placed.get(g.id)]
    layers_placed = sum(placed.values()) or 1
    split = tuple(placed[g.id] / layers_placed for g in order) if len(order) > 1 else ()
    return LoadPlan(gpu_layers, num_ctx, size, size_vram, split, processor_text(size, size_vram))


def _reserve(gpu: GPU, config: Config) -> int:
    return config.gpu_overhead_bytes + MINIMUM_GPU_RESERVE.get(gpu.library, 457 * MIB)


def _fit(est: Estimate, gpus: list[GPU], config: Config,
         first: tuple[str, int] | None = None) -> tuple[int, dict[str, int]]:
    """As many layers as fit, the last ones first (llama.cpp offloads from the end); each GPU that
    takes layers also holds a compute graph. The output layer follows when every layer fits.
    ``first``: (GPU id, bytes) taken on that GPU before any layer (the projector); none when it does not fit."""
    room = {g.id: g.free - _reserve(g, config) - est.graph for g in gpus}
    if first is not None and first[0] in room:
        room[first[0]] -= first[1]
        if room[first[0]] < 0:
            return 0, {}
    placed: dict[str, int] = {}
    count = 0
    for size in reversed(est.layers):
        target = max(gpus, key=lambda g: room[g.id])
        if room[target.id] < size:
            break
        room[target.id] -= size
        placed[target.id] = placed.get(target.id, 0) + 1
        count += 1
    if count == len(est.layers):
        target = max(gpus, key=lambda g: room[g.id])
        if room[target.id] >= est.output:
            count += 1
    return count, placed


def _split(est: Estimate, gpus: list[GPU], layers: int) -> dict[str, int]:
    """A forced layer count (num_gpu) spread over the GPUs in proportion to their free memory."""
    total_free = sum(max(g.free, 1) for g in gpus)
    placed: dict[str, int] = {}
    left = min(layers, len(est.layers))
    for i, g in enumerate(gpus):
        share = left if i == len(gpus) - 1 else round(min(layers, len(est.layers)) * max(g.free, 1) / total_free)
        share = min(share, left)
        placed[g.id] = share
        left -= share
    return placed


def _check_ram(needed: int, system: SystemInfo, size: int) -> None:
    available = system.cpu.free_memory + system.cpu.free_swap
    if system.cpu.total_memory and needed > available:
        if system.usable_gpus:
            raise InsufficientMemory(f"model requires more system memory ({_gib(needed)}) than is available "
                                     f"({_gib(available)}); the model needs {_gib(size)} in all and the GPUs "
                                     f"have {_gib(sum(g.free for g in system.usable_gpus))} free")
        raise InsufficientMemory(f"model requires more system memory ({_gib(needed)}) than is available ({_gib(available)})")


def _gib(n: int) -> str:
    return f"{n / GIB:.1f} GiB"
