"""What each supported architecture needs: its GGUF hyperparameters and its tensor fix-ups.

An ``Arch`` names llama.cpp's architecture (``gguf.MODEL_ARCH``), writes the ``<arch>.*`` keys from
``config.json``, says which checkpoint tensors are not part of the model, changes tensor data where
llama.cpp's layout differs from transformers' (Llama's q/k rows are permuted for its RoPE layout,
Gemma's norms store ``1 + w``), adds derived tensors (Llama 3's RoPE frequency factors, Phi-3's
long/short factors) and gives the shapes the checkpoint's tensors must have. Tensor *names* are
mapped by the ``gguf`` package's ``TensorNameMap`` in ``writer``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gguf
import numpy as np

from ollamalike.errors import BadRequest
from ollamalike.library.convert.source import Checkpoint

A = gguf.MODEL_ARCH


class Hparams:
    """config.json (a multimodal config's ``text_config`` merged over it) with typed look-ups."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.raw = {**config, **(config.get("text_config") or {})}

    def get(self, *keys: str, default: Any = None) -> Any:
        for k in keys:
            if self.raw.get(k) is not None:
                return self.raw[k]
        return default

    def need(self, *keys: str) -> Any:
        value = self.get(*keys)
        if value is None:
            raise BadRequest(f"config.json: missing {keys[0]!r}")
        return value

    @property
    def n_layer(self) -> int:
        return int(self.need("num_hidden_layers", "n_layer", "num_layers"))

    @property
    def n_embd(self) -> int:
        return int(self.need("hidden_size", "n_embd", "d_model"))

    @property
    def n_head(self) -> int:
        return int(self.need("num_attention_heads", "n_head"))

    @property
    def n_head_kv(self) -> int:
        return int(self.get("num_key_value_heads", "n_head_kv", default=self.n_head))

    @property
    def head_dim(self) -> int:
        return int(self.get("head_dim", default=self.n_embd // self.n_head))

    @property
    def n_ff(self) -> int:
        return int(self.need("intermediate_size", "n_inner"))

    @property
    def n_vocab(self) -> int:
        return int(self.need("vocab_size"))

    @property
    def rope(self) -> dict[str, Any]:
        scaling = self.get("rope_parameters", "rope_scaling", default={}) or {}
        scaling = scaling.get("full_attention", scaling)
        out = dict(scaling)
        out.setdefault("rope_type", scaling.get("type"))
        if self.get("rope_theta") is not None:
            out.setdefault("rope_theta", self.get("rope_theta"))
        return out


@dataclass(frozen=True)
class Arch:
    arch: gguf.MODEL_ARCH
    params: Callable[[gguf.GGUFWriter, Hparams, Checkpoint], None]
    shapes: Callable[[Hparams], dict[str, tuple[int, ...]]]
    skip: Callable[[str], bool] = lambda name: False
    rename: Callable[[str], str] = lambda name: name
    fix: Callable[[str, np.ndarray, Hparams], np.ndarray] = lambda name, data, hp: data
    extra: Callable[[Hparams], dict[str, np.ndarray]] = lambda hp: {}
    embedding: bool = False
    tags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def name(self) -> str:
        return gguf.MODEL_ARCH_NAMES[self.arch]


def _common(w: gguf.GGUFWriter, hp: Hparams) -> None:
    w.add_block_count(hp.n_layer)
    w.add_context_length(int(hp.get("max_position_embeddings", "n_positions", default=4096)))
    w.add_embedding_length(hp.n_embd)
    w.add_feed_forward_length(hp.n_ff)
    w.add_head_count(hp.n_head)


def _decoder(w: gguf.GGUFWriter, hp: Hparams, ckpt: Checkpoint) -> None:
    _common(w, hp)
    w.add_head_count_kv(hp.n_head_kv)
    w.add_layer_norm_rms_eps(float(hp.get("rms_norm_eps", default=1e-6)))
    w.add_vocab_size(hp.n_vocab)
    w.add_rope_dimension_count(hp.head_dim)
    # Always, as llama.cpp's converter does (transformers' configs derive head_dim); Gemma's is not hidden/heads.
    w.add_key_length(hp.head_dim)
    w.add_value_length(hp.head_dim)
    rope = hp.rope
    if rope.get("rope_theta") is not None:
        w.add_rope_freq_base(float(rope["rope_theta"]))
    kind, factor = str(rope.get("rope_type") or "").lower(), rope.get("factor")
    if kind == "linear" and factor:
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(float(factor))
    elif kind == "yarn" and factor:
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(float(factor))
        w.add_rope_scaling_orig_ctx_len(int(rope.get("original_max_position_embeddings", 4096)))
    elif kind not in ("", "none", "default", "llama3", "longrope", "su"):
        raise BadRequest(f"config.json: unsupported rope scaling type {kind!r}")


def _decoder_shapes(hp: Hparams) -> dict[str, tuple[int, ...]]:
    e, q, kv, ff = hp.n_embd, hp.n_head * hp.head_dim, hp.n_head_kv * hp.head_dim, hp.n_ff
    return {
        "token_embd.weight": (hp.n_vocab, e),
        "blk.*.attn_q.weight": (q, e),
        "blk.*.attn_k.weight": (kv, e),
        "blk.*.attn_v.weight": (kv, e),
        "blk.*.attn_output.weight": (e, q),
        "blk.*.ffn_gate.weight": (ff, e),
        "blk.*.ffn_up.weight": (ff, e),
        "blk.*.ffn_down.weight": (e, ff),
        "blk.*.attn_norm.weight": (e,),
        "output_norm.weight": (e,),
    }


def _permute(data: np.ndarray, n_head: int) -> np.ndarray:
    """transformers' rotate-half q/k rows -> llama.cpp's interleaved RoPE layout."""
    out: np.ndarray = data.reshape(n_head, 2, data.shape[0] // n_head // 2, *data.shape[1:]).swapaxes(1, 2).reshape(data.shape)
    return out


def _llama_fix(name: str, data: np.ndarray, hp: Hparams) -> np.ndarray:
    if name.endswith(("q_proj.weight", "q_proj.bias")):
        return _permute(data, hp.n_head)
    if name.endswith(("k_proj.weight", "k_proj.bias")):
        return _permute(data, hp.n_head_kv)
    return data


def _llama3_freqs(hp: Hparams) -> dict[str, np.ndarray]:
    """Llama 3.x rope scaling is a per-dimension frequency factor tensor (``rope_freqs``)."""
    rope = hp.rope
    if str(rope.get("rope_type") or "").lower() != "llama3":
        return {}
    base, dim = float(rope.get("rope_theta", 10000.0)), hp.head_dim
    factor = float(rope.get("factor", 8.0))
    low, high = float(rope.get("low_freq_factor", 1.0)), float(rope.get("high_freq_factor", 4.0))
    old_ctx = float(rope.get("original_max_position_embeddings", 8192))
    factors = []
    for i in range(0, dim, 2):
        wavelen = 2 * math.pi * base ** (i / dim)
        if wavelen < old_ctx / high:
            factors.append(1.0)
        elif wavelen > old_ctx / low:
            factors.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return {"rope_freqs.weight": np.array(factors, dtype=np.float32)}


def _norm_plus_one(name: str, data: np.ndarray, hp: Hparams) -> np.ndarray:
    """Gemma's RMSNorm multiplies by ``1 + w``; llama.cpp multiplies by the stored weight."""
    return data + 1 if name.endswith("norm.weight") else data


def _gemma2(w: gguf.GGUFWriter, hp: Hparams, ckpt: Checkpoint) -> None:
    _decoder(w, hp, ckpt)
    w.add_attn_logit_softcapping(float(hp.get("attn_logit_softcapping", default=50.0)))
    w.add_final_logit_softcapping(float(hp.get("final_logit_softcapping", default=30.0)))
    w.add_sliding_window(int(hp.get("sliding_window", default=4096)))


def _gemma3(w: gguf.GGUFWriter, hp: Hparams, ckpt: Checkpoint) -> None:
    _decoder(w, hp, ckpt)
    if hp.rope.get("rope_theta") is None:
        w.add_rope_freq_base(1_000_000.0)
    if hp.get("rope_local_base_freq") is not None:
        w.add_rope_freq_base_swa(float(hp.get("rope_local_base_freq")))
    if hp.get("final_logit_softcapping"):
        w.add_final_logit_softcapping(float(hp.get("final_logit_softcapping")))
    if hp.get("sliding_window_pattern") != 1:
        w.add_sliding_window(int(hp.get("sliding_window", default=4096)))


def _gemma_shapes(hp: Hparams) -> dict[str, tuple[int, ...]]:
    shapes = _decoder_shapes(hp)
    del shapes["token_embd.weight"]  # Gemma 3 checkpoints may pad the embedding past the tokenizer
    return shapes


def _phi3(w: gguf.GGUFWriter, hp: Hparams, ckpt: Checkpoint) -> None:
    _common(w, hp)
    w.add_head_count_kv(hp.n_head_kv)
    w.add_layer_norm_rms_eps(float(hp.get("rms_norm_eps", default=1e-5)))
    rope = hp.rope
    w.add_rope_dimension_count(int(float(hp.get("partial_rotary_factor", default=1.0)) * hp.n_embd) // hp.n_head)
    w.add_rope_freq_base(float(rope.get("rope_theta", 10000.0)))
    ctx = int(hp.get("max_position_embeddings", default=4096))
    # transformers' Phi3Config default (what llama.cpp's converter reads through it), not the context length.
    orig = int(hp.get("original_max_position_embeddings", default=4096))
    w.add_rope_scaling_orig_ctx_len(orig)
    w.add_sliding_window(int(hp.get("sliding_window", default=0) or 0))
    if rope.get("long_factor"):
        scale = ctx / orig
        attn = math.sqrt(1 + math.log(scale) / math.log(orig)) if scale > 1.0 else 1.0
        w.add_rope_scaling_attn_factors(attn)


def _phi3_extra(hp: Hparams) -> dict[str, np.ndarray]:
    rope = hp.rope
    if not rope.get("long_factor") or not rope.get("short_factor"):
        return {}
    return {
        "rope_factors_long.weight": np.array(rope["long_factor"], dtype=np.float32),
        "rope_factors_short.weight": np.array(rope["short_factor"], dtype=np.float32),
    }


def _phi3_shapes(hp: Hparams) -> dict[str, tuple[int, ...]]:
    e, q, kv, ff = hp.n_embd, hp.n_head * hp.head_dim, hp.n_head_kv * hp.head_dim, hp.n_ff
    return {
        "token_embd.weight": (hp.n_vocab, e),
        "blk.*.attn_qkv.weight": (q + 2 * kv, e),
        "blk.*.attn_output.weight": (e, q),
        "blk.*.ffn_up.weight": (2 * ff, e),
        "blk.*.ffn_down.weight": (e, ff),
        "blk.*.attn_norm.weight": (e,),
        "output_norm.weight": (e,),
    }


def _pooling(ckpt: Checkpoint) -> gguf.PoolingType | None:
    """sentence-transformers' pooling module (modules.json -> <path>/config.json), if any."""
    entries = ckpt.json_value("modules.json") if ckpt.has("modules.json") else []
    for mod in entries if isinstance(entries, list) else []:
        if isinstance(mod, dict) and str(mod.get("type", "")).endswith("Pooling"):
            cfg = ckpt.json_file(f"{mod.get('path', '')}/config.json") or {}
            if cfg.get("pooling_mode_mean_tokens"):
                return gguf.PoolingType.MEAN
            if cfg.get("pooling_mode_cls_token"):
                return gguf.PoolingType.CLS
            if cfg.get("pooling_mode_lasttoken"):
                return gguf.PoolingType.LAST
            raise BadRequest("1_Pooling/config.json: only mean, CLS and last-token pooling are supported")
    return None


def _bert(w: gguf.GGUFWriter, hp: Hparams, ckpt: Checkpoint) -> None:
    _common(w, hp)
    w.add_layer_norm_eps(float(hp.get("layer_norm_eps", "layer_norm_epsilon", default=1e-12)))
    w.add_causal_attention(False)
    if (pooling := _pooling(ckpt)) is not None:
        w.add_pooling_type(pooling)


def _bert_shapes(hp: Hparams) -> dict[str, tuple[int, ...]]:
    e, ff = hp.n_embd, hp.n_ff
    return {
        "token_embd.weight": (hp.n_vocab, e),
        "position_embd.weight": (int(hp.get("max_position_embeddings", default=512)), e),
        "blk.*.attn_q.weight": (e, e),
        "blk.*.attn_k.weight": (e, e),
        "blk.*.attn_v.weight": (e, e),
        "blk.*.attn_output.weight": (e, e),
        "blk.*.ffn_up.weight": (ff, e),
        "blk.*.ffn_down.weight": (e, ff),
    }


def _bert_rename(name: str) -> str:
    name = name.removeprefix("bert.")
    if name.endswith(".gamma"):
        name = name[: -len(".gamma")] + ".weight"
    if name.endswith(".beta"):
        name = name[: -len(".beta")] + ".bias"
    return name


def _bert_skip(name: str) -> bool:
    return name in ("embeddings.position_ids",) or name.startswith(("pooler.", "cls."))


def _nomic(w: gguf.GGUFWriter, hp: Hparams, ckpt: Checkpoint) -> None:
    if hp.get("moe_every_n_layers") or hp.get("activation_function", "swiglu") != "swiglu":
        raise BadRequest("config.json: only the SwiGLU (v1/v1.5) nomic-bert models are supported")
    if hp.get("n_positions") == 8192 and hp.get("max_trained_positions", default=2048) == 2048:
        hp.raw["n_positions"] = 2048  # nomic-embed-text v1/v1.5 are trained for 2048 tokens
    _bert(w, hp, ckpt)
    w.add_rope_freq_base(float(hp.get("rotary_emb_base", default=1000.0)))


def _nomic_shapes(hp: Hparams) -> dict[str, tuple[int, ...]]:
    e, ff = hp.n_embd, hp.n_ff
    return {
        "token_embd.weight": (hp.n_vocab, e),
        "blk.*.attn_qkv.weight": (3 * e, e),
        "blk.*.attn_output.weight": (e, e),
        "blk.*.ffn_up.weight": (ff, e),
        "blk.*.ffn_gate.weight": (ff, e),
        "blk.*.ffn_down.weight": (e, ff),
    }


def _skip_rotary(name: str) -> bool:
    return name.endswith(".rotary_emb.inv_freq")


_LLAMA = Arch(A.LLAMA, _decoder, _decoder_shapes, skip=_skip_rotary, fix=_llama_fix, extra=_llama3_freqs)
ARCHITECTURES: dict[str, Arch] = {
    "LlamaForCausalLM": _LLAMA,
    "MistralForCausalLM": _LLAMA,
    "Qwen2ForCausalLM": Arch(A.QWEN2, _decoder, _decoder_shapes, skip=_skip_rotary),
    "Qwen3ForCausalLM": Arch(A.QWEN3, _decoder, _decoder_shapes, skip=_skip_rotary),
    "Gemma2ForCausalLM": Arch(A.GEMMA2, _gemma2, _gemma_shapes, fix=_norm_plus_one),
    "Gemma3ForCausalLM": Arch(A.GEMMA3, _gemma3, _gemma_shapes, fix=_norm_plus_one),
    "Phi3ForCausalLM": Arch(A.PHI3, _phi3, _phi3_shapes, skip=_skip_rotary, extra=_phi3_extra),
    "BertModel": Arch(A.BERT, _bert, _bert_shapes, skip=_bert_skip, rename=_bert_rename, embedding=True),
    "BertForMaskedLM": Arch(A.BERT, _bert, _bert_shapes, skip=_bert_skip, rename=_bert_rename, embedding=True),
    "NomicBertModel": Arch(A.NOMIC_BERT, _nomic, _nomic_shapes, embedding=True),
}


def select(config: dict[str, Any]) -> Arch:
    names = config.get("architectures")
    if not isinstance(names, list) or not names or not isinstance(names[0], str):
        raise BadRequest("config.json: missing 'architectures'")
    arch = ARCHITECTURES.get(names[0])
    if arch is None:
        raise BadRequest(
            f"unsupported architecture {names[0]!r} in config.json (supported: {', '.join(sorted(ARCHITECTURES))})"
        )
    return arch
