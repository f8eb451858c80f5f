"""``RunnerSpec``: everything a runner process is started with, in one frozen value.

The scheduler builds it (``scheduler/plan.py``), the daemon sends it to the runner as JSON
(``--spec``), and the runner decodes it back into this same class and loads the model from it. Its
defaults are the only defaults of these settings. Two requests can share a runner exactly when
their specs are equal. No llama_cpp import here: the daemon imports this module.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, cast

from ollamalike.config import (
    DEFAULT_PROMPT_CACHE,
    FLASH_ATTENTION_MODES,
    KV_CACHE_TYPES,
    SPECULATIVE_MODES,
    FlashAttention,
    KVCacheType,
    SpeculativeMode,
)
from ollamalike.errors import RunnerError

MAX_GPUS = 16


@dataclass(frozen=True)
class RunnerSpec:
    model_path: str
    ctx_size: int = 2048  # total: per-slot context x num_parallel
    num_parallel: int = 1
    num_batch: int = 512
    gpu_layers: int = 0
    threads: int = 0  # 0: the runner picks (physical cores)
    flash_attn: FlashAttention = "auto"  # "auto": where the backend supports it (a quantized V cache forces it on)
    use_mmap: bool = True
    embedding: bool = False
    adapters: tuple[str, ...] = ()
    projectors: tuple[str, ...] = ()  # mmproj GGUFs (the model's image/audio projector); the runner loads the first
    kv_cache_type: KVCacheType = "f16"
    main_gpu: int = 0
    tensor_split: tuple[float, ...] = ()  # share of the offloaded layers per GPU; () lets llama.cpp choose
    model_splits: tuple[str, ...] = ()  # a split GGUF's other shards, in order (model_path is the first)
    prompt_cache: int = DEFAULT_PROMPT_CACHE  # bytes of host RAM for evicted slots' states (runner/promptcache.py); 0: off
    speculative: SpeculativeMode = "on"  # prompt lookup (and the draft model): runner/speculate.py
    draft_model_path: str = ""  # a draft model's GGUF (the Modelfile's DRAFT layer); "" for none

    def __post_init__(self) -> None:
        # A spec is made from trusted values (the scheduler's plan); these are invariants, and the
        # runner relies on them without checking again.
        object.__setattr__(self, "adapters", tuple(self.adapters))
        object.__setattr__(self, "projectors", tuple(self.projectors))
        object.__setattr__(self, "model_splits", tuple(self.model_splits))
        object.__setattr__(self, "tensor_split", tuple(float(x) for x in self.tensor_split))
        if not self.model_path:
            raise RunnerError("runner spec: model_path is empty")
        for name in ("ctx_size", "num_parallel", "num_batch"):
            if getattr(self, name) < 1:
                raise RunnerError(f"runner spec: {name} must be at least 1")
        if self.num_batch < self.num_parallel:
            # llama.cpp asserts (and aborts) when a batch cannot hold one token of every sequence.
            raise RunnerError(f"runner spec: num_batch ({self.num_batch}) must be at least num_parallel "
                              f"({self.num_parallel})")
        if self.main_gpu < 0 or self.threads < 0 or self.prompt_cache < 0:
            raise RunnerError("runner spec: main_gpu, threads and prompt_cache must not be negative")
        if self.flash_attn not in FLASH_ATTENTION_MODES:
            raise RunnerError(f"runner spec: invalid choice: {self.flash_attn!r} for flash_attn "
                              f"(choose from {', '.join(FLASH_ATTENTION_MODES)})")
        if self.kv_cache_type not in KV_CACHE_TYPES:
            raise RunnerError(f"runner spec: invalid choice: {self.kv_cache_type!r} for kv_cache_type "
                              f"(choose from {', '.join(KV_CACHE_TYPES)})")
        if self.speculative not in SPECULATIVE_MODES:
            raise RunnerError(f"runner spec: invalid choice: {self.speculative!r} for speculative "
                              f"(choose from {', '.join(SPECULATIVE_MODES)})")
        split = self.tensor_split
        if split and (len(split) > MAX_GPUS or not all(x >= 0 and math.isfinite(x) for x in split) or not any(split)):
            raise RunnerError(f"runner spec: tensor_split must be 1-{MAX_GPUS} non-negative shares, not all zero")

    @property
    def ctx_per_slot(self) -> int:
        return max(1, self.ctx_size // self.num_parallel)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> RunnerSpec:
        """The spec ``to_json`` wrote. Anything else (unknown or mistyped fields) is a RunnerError."""
        try:
            data = json.loads(text)
        except ValueError:
            raise RunnerError("runner spec: not JSON") from None
        if not isinstance(data, dict):
            raise RunnerError("runner spec: not a JSON object")
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise RunnerError(f"runner spec: unknown field(s) {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for name, value in data.items():
            values[name] = _decode(name, known[name].default, value)
        if "model_path" not in values:
            raise RunnerError("runner spec: model_path is missing")
        return cls(**values)

    def argv(self, socket_path: str) -> list[str]:
        """The runner's command-line arguments (after ``python -m ollamalike.runner``)."""
        return ["--spec", self.to_json(), "--socket", socket_path]


def _decode(name: str, default: Any, value: Any) -> Any:
    """One JSON field back to its Python type (the type of the field's default)."""
    ok: bool
    if name == "model_path" or isinstance(default, str):
        ok = isinstance(value, str)
    elif isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, tuple):
        item = str if name in ("adapters", "projectors", "model_splits") else (int, float)
        ok = isinstance(value, list) and all(isinstance(v, item) and not isinstance(v, bool) for v in value)
        value = tuple(value) if ok else value
    else:
        ok = False
    if not ok:
        raise RunnerError(f"runner spec: {name} has the wrong type ({type(value).__name__})")
    return cast(Any, value)
