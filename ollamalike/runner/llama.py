"""Loading a model with llama.cpp's low-level API: model, context, log capture, memory figures.

``load_model`` returns a ``Loaded`` bundle (model, context, vocab and the numbers the engine needs)
or raises ``LoadError`` carrying llama.cpp's own reason, taken from its log.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import sys
import threading
from collections import deque
from dataclasses import dataclass
from typing import cast

import llama_cpp

from ollamalike.runner.spec import RunnerSpec

# llama.cpp's handles carry llama-cpp-python's own types (NewTypes over the pointer value); a
# released handle is NULL (0), as llama.cpp's own API has it.

_KV_TYPES = {"f16": llama_cpp.GGML_TYPE_F16, "q8_0": llama_cpp.GGML_TYPE_Q8_0, "q4_0": llama_cpp.GGML_TYPE_Q4_0}
_KV_BYTES = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}
_LOG_WARN, _LOG_ERROR, _LOG_CONT = 3, 4, 5
_FLASH_ATTN = {"auto": llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO, "on": llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED,
               "off": llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED}


class LoadError(Exception):
    """The model could not be loaded; the message is llama.cpp's reason."""


class _LogCapture:
    """Receives llama.cpp's log: keeps recent warnings/errors for error messages, echoes them to stderr."""

    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose
        self.errors: deque[str] = deque(maxlen=20)
        self._level = 0
        self._line = ""
        self._lock = threading.Lock()
        self.callback = llama_cpp.llama_log_callback(self._on_log)

    def _on_log(self, level: int, text: bytes, _user: ctypes.c_void_p) -> None:
        if level != _LOG_CONT:
            self._level = level
        if not (self.verbose or self._level >= _LOG_WARN):
            return
        chunk = text.decode("utf-8", errors="replace")
        sys.stderr.write(chunk)
        if self._level >= _LOG_ERROR:
            with self._lock:
                self._line += chunk
                while "\n" in self._line:
                    line, self._line = self._line.split("\n", 1)
                    if line.strip():
                        self.errors.append(line.strip())

    def reason(self, default: str) -> str:
        """llama.cpp's first error line (the root cause; later lines only say "failed to load")."""
        with self._lock:
            lines = list(self.errors)
        if not lines:
            return default
        func, sep, rest = lines[0].partition(": ")
        return rest if sep and func.isidentifier() else lines[0]


@dataclass
class Loaded:
    model: llama_cpp.llama_model_p
    ctx: llama_cpp.llama_context_p
    vocab: llama_cpp.llama_vocab_p
    mem: llama_cpp.llama_memory_t | None  # None for a context without a KV cache (an encoder)
    n_vocab: int
    n_ctx: int
    n_ctx_slot: int
    n_batch: int
    n_embd: int
    bos: int
    add_bos: bool
    size: int
    size_vram: int
    adapters: list[llama_cpp.llama_adapter_lora_p]
    opts: RunnerSpec | None = None  # what it was loaded with (a second context is made alike)

    def close(self) -> None:
        for a in self.adapters:
            llama_cpp.llama_adapter_lora_free(a)
        self.adapters = []
        if self.ctx:
            llama_cpp.llama_free(self.ctx)
            self.ctx = llama_cpp.llama_context_p(0)
            self.mem = None
        if self.model:
            llama_cpp.llama_model_free(self.model)
            self.model = llama_cpp.llama_model_p(0)


_capture: _LogCapture | None = None


def install_log_capture(verbose: bool) -> _LogCapture:
    global _capture
    if _capture is None:
        _capture = _LogCapture(verbose)
        llama_cpp.llama_log_set(_capture.callback, ctypes.c_void_p(0))
    return _capture


def model_params(opts: RunnerSpec) -> tuple[llama_cpp.llama_model_params, ctypes.Array[ctypes.c_float] | None]:
    """llama.cpp's model parameters for ``opts``, and the tensor-split array they point to (which
    must stay alive until the model is loaded)."""
    mparams = llama_cpp.llama_model_default_params()
    mparams.n_gpu_layers = opts.gpu_layers
    mparams.use_mmap = opts.use_mmap
    mparams.main_gpu = opts.main_gpu
    split = None
    if opts.tensor_split:
        devices = int(llama_cpp.LLAMA_MAX_DEVICES)
        if len(opts.tensor_split) > devices:
            raise LoadError(f"tensor split names {len(opts.tensor_split)} GPUs; this build supports {devices}")
        split = (ctypes.c_float * devices)(*opts.tensor_split)
        mparams.tensor_split = ctypes.cast(split, ctypes.POINTER(ctypes.c_float))
    return mparams, split


def load_model(opts: RunnerSpec, progress: list[float], verbose: bool = False) -> Loaded:
    """Load the model and create one context with ``parallel`` sequence slots.

    ``progress[0]`` is updated (0..1) while the weights load; /health reports it.
    """
    capture = install_log_capture(verbose)
    if opts.kv_cache_type not in _KV_TYPES:
        raise LoadError(f"unsupported kv cache type {opts.kv_cache_type!r}: use f16, q8_0 or q4_0")
    llama_cpp.llama_backend_init()
    mparams, split = model_params(opts)

    def on_progress(value: float, _user: ctypes.c_void_p) -> bool:
        progress[0] = float(value)
        return True

    cb = llama_cpp.llama_progress_callback(on_progress)
    mparams.progress_callback = cb
    if opts.model_splits:
        # Shards are store blobs without llama.cpp's file names: every path is given, in order.
        paths = [p.encode() for p in (opts.model_path, *opts.model_splits)]
        model = llama_cpp.llama_model_load_from_splits((ctypes.c_char_p * len(paths))(*paths), len(paths), mparams)
    else:
        model = llama_cpp.llama_model_load_from_file(opts.model_path.encode(), mparams)
    del split  # llama.cpp copied the split while loading
    if not model:
        raise LoadError(capture.reason(f"failed to load model {opts.model_path}"))
    progress[0] = 1.0
    adapters: list[llama_cpp.llama_adapter_lora_p] = []
    try:
        for path in opts.adapters:
            a = llama_cpp.llama_adapter_lora_init(model, path.encode())
            if not a:
                raise LoadError(capture.reason(f"failed to load adapter {path}"))
            adapters.append(a)
        ctx, n_batch = _new_context(model, opts)
        if not ctx:
            raise LoadError(capture.reason("failed to create the llama.cpp context (out of memory?)"))
    except BaseException:
        for a in adapters:
            llama_cpp.llama_adapter_lora_free(a)
        llama_cpp.llama_model_free(model)
        raise
    if adapters:
        _set_adapters(ctx, adapters)
    vocab = llama_cpp.llama_model_get_vocab(model)
    if not vocab:
        raise LoadError(capture.reason(f"model {opts.model_path} has no vocabulary"))
    n_ctx = llama_cpp.llama_n_ctx(ctx)
    size, vram = _memory(model, opts, n_ctx)
    return Loaded(
        model=model, ctx=ctx, vocab=vocab, mem=llama_cpp.llama_get_memory(ctx),
        n_vocab=llama_cpp.llama_vocab_n_tokens(vocab), n_ctx=n_ctx,
        n_ctx_slot=max(1, min(opts.ctx_size // max(opts.num_parallel, 1), llama_cpp.llama_n_ctx_seq(ctx))), n_batch=n_batch,
        n_embd=llama_cpp.llama_model_n_embd(model), bos=llama_cpp.llama_vocab_bos(vocab),
        add_bos=bool(llama_cpp.llama_vocab_get_add_bos(vocab)), size=size, size_vram=vram, adapters=adapters,
        opts=opts,
    )


@dataclass
class Preload:
    """A model load begun in a thread before the runner's server exists, so that importing the
    server (aiohttp, the engine) overlaps llama.cpp reading the weights."""

    future: concurrent.futures.Future[Loaded]
    progress: list[float]


def start_loading(opts: RunnerSpec, verbose: bool = False) -> Preload:
    future: concurrent.futures.Future[Loaded] = concurrent.futures.Future()
    progress = [0.0]

    def work() -> None:
        try:
            future.set_result(load_model(opts, progress, verbose))
        except BaseException as e:  # the server reports it; a thread has nowhere else to raise
            future.set_exception(e)

    threading.Thread(target=work, name="load", daemon=True).start()
    return Preload(future, progress)


def embedding_context(m: Loaded, n_ctx: int) -> llama_cpp.llama_context_p | None:
    """A second context on the loaded model, for embeddings beside the generation context (whose KV
    cache, batches and outputs it never touches). ``n_ctx`` tokens fit in one micro-batch, as a
    pooled embedding needs; a model without a pooling type of its own is pooled by mean. The
    adapters apply as in the generation context. None when llama.cpp cannot make it."""
    base = m.opts or RunnerSpec(model_path="(loaded)")
    opts = RunnerSpec(
        model_path=base.model_path, ctx_size=n_ctx, num_parallel=1, num_batch=n_ctx, threads=base.threads,
        flash_attn=base.flash_attn, embedding=True, kv_cache_type=base.kv_cache_type,
    )
    ctx, _ = _new_context(m.model, opts)
    if ctx and m.adapters:
        _set_adapters(ctx, m.adapters)
    return ctx or None


def _set_adapters(ctx: llama_cpp.llama_context_p, adapters: list[llama_cpp.llama_adapter_lora_p]) -> None:
    """Apply the LoRA adapters to ``ctx``, each at scale 1."""
    # llama-cpp-python's stubs say c_void_p for an adapter handle; at run time it is the
    # POINTER(c_void_p) that llama_adapter_lora_init's restype makes, which the array holds.
    handles = cast("list[ctypes._Pointer[ctypes.c_void_p]]", adapters)
    arr = (llama_cpp.llama_adapter_lora_p_ctypes * len(adapters))(*handles)
    scales = (ctypes.c_float * len(adapters))(*([1.0] * len(adapters)))
    llama_cpp.llama_set_adapters_lora(ctx, arr, len(adapters), scales)


def _new_context(model: llama_cpp.llama_model_p, opts: RunnerSpec) -> tuple[llama_cpp.llama_context_p | None, int]:
    cparams = llama_cpp.llama_context_default_params()
    parallel = max(1, opts.num_parallel)
    n_ctx_train = llama_cpp.llama_model_n_ctx_train(model)
    cparams.n_ctx = max(opts.ctx_size, 8 * parallel)
    cparams.n_seq_max = parallel
    # Each slot gets its own KV stream (Ollama's split cache): attention never scans other slots' cells.
    cparams.kv_unified = False
    n_batch = max(1, opts.num_batch)
    if opts.embedding:
        # Non-causal models need a whole input in one micro-batch.
        n_batch = max(n_batch, min(cparams.n_ctx, n_ctx_train or cparams.n_ctx))
        cparams.embeddings = True
    cparams.n_batch = n_batch
    cparams.n_ubatch = n_batch
    threads = opts.threads if opts.threads > 0 else _default_threads()
    cparams.n_threads = threads
    cparams.n_threads_batch = threads
    cparams.flash_attn_type = _FLASH_ATTN[opts.flash_attn]
    kv = _effective_kv_type(model, opts)
    cparams.type_k = _KV_TYPES[kv]
    cparams.type_v = _KV_TYPES[kv]
    cparams.no_perf = True
    ctx = llama_cpp.llama_init_from_model(model, cparams)
    if ctx and opts.embedding and llama_cpp.llama_pooling_type(ctx) == llama_cpp.LLAMA_POOLING_TYPE_NONE:
        # A generative model asked for embeddings: pool by mean, as Ollama does.
        llama_cpp.llama_free(ctx)
        cparams.pooling_type = llama_cpp.LLAMA_POOLING_TYPE_MEAN
        ctx = llama_cpp.llama_init_from_model(model, cparams)
    return ctx, n_batch


def new_context(model: llama_cpp.llama_model_p, opts: RunnerSpec) -> tuple[llama_cpp.llama_context_p | None, int]:
    """A context on ``model`` made as the runner's own are (the draft model's, runner/draft.py)."""
    return _new_context(model, opts)


def _effective_kv_type(model: llama_cpp.llama_model_p, opts: RunnerSpec) -> str:
    """As Ollama: a quantized KV cache needs flash attention and head sizes that fit its 32-wide
    blocks; otherwise the cache stays f16 (with a warning) instead of failing the load. With
    flash attention on "auto", llama.cpp turns it on for a quantized V cache."""
    kv = opts.kv_cache_type
    if kv == "f16":
        return kv
    head_dim = llama_cpp.llama_model_n_embd(model) // max(1, llama_cpp.llama_model_n_head(model))
    if opts.flash_attn == "off" or head_dim % 32:
        why = "flash attention is off" if opts.flash_attn == "off" else f"head size {head_dim} is not a multiple of 32"
        print(f"warning: kv cache type {kv} not used ({why}); using f16", file=sys.stderr, flush=True)
        return "f16"
    return kv


def _default_threads() -> int:
    import os

    count = os.cpu_count() or 1
    return max(1, count // 2) if count > 4 else count


def _memory(model: llama_cpp.llama_model_p, opts: RunnerSpec, n_ctx: int) -> tuple[int, int]:
    """Bytes the model takes: weights plus the KV cache; the VRAM share follows the offloaded layers."""
    n_layer = max(1, llama_cpp.llama_model_n_layer(model))
    n_head = max(1, llama_cpp.llama_model_n_head(model))
    n_head_kv = max(1, llama_cpp.llama_model_n_head_kv(model))
    head_dim = llama_cpp.llama_model_n_embd(model) // n_head
    kv = int(2 * n_ctx * n_layer * n_head_kv * head_dim * _KV_BYTES[opts.kv_cache_type])
    weights = int(llama_cpp.llama_model_size(model))
    size = weights + kv
    vram = 0
    if llama_cpp.llama_supports_gpu_offload() and opts.gpu_layers > 0:
        vram = int(size * min(1.0, opts.gpu_layers / n_layer))
    return size, vram
