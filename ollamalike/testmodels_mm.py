"""Tiny random-weight multimodal projectors (mmproj GGUFs) for ``testmodels.write_tiny_llama``.

``write_tiny_projector`` writes a CLIP vision projector and ``write_tiny_audio_projector`` a
Whisper-style audio projector, in the layouts llama.cpp's mtmd (``tools/mtmd/clip.cpp``) loads, so
tests run the real image and audio paths of the runner. Deterministic (fixed seeds); nothing is
downloaded. ``general.architecture`` is ``clip``, which is how a create tells a projector from a model.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
from gguf.constants import LlamaFileType

from ollamalike.testmodels import _tmp, _weights, _write


def write_tiny_projector(
    path: str | Path,
    n_embd_text: int = 64,
    n_embd: int = 32,
    n_head: int = 2,
    n_ff: int = 64,
    n_layer: int = 2,
    image_size: int = 32,
    patch_size: int = 8,
    seed: int = 4321,
    projector_type: str = "mlp",
    merge: int = 2,
) -> Path:
    """A random-weight CLIP vision projector (LLaVA-style ``mlp``) for ``write_tiny_llama``'s embedding size.

    llama.cpp's mtmd loads it like a real mmproj: a ViT over ``patch_size`` patches of the image resized
    to ``image_size``, then the two-layer MLP into the text model's embedding space, so each image is
    ``(image_size // patch_size) ** 2`` tokens (16 by default). ``general.architecture`` is ``clip``, which
    is how a create tells a projector from a model (as Ollama does).

    ``projector_type="gemma3"``: Gemma 3's projector instead of the MLP, whose image tokens attend to each
    other both ways (mtmd decodes them non-causally, so one image must fit one batch): the patches are
    average-pooled ``merge`` x ``merge``, so an image is ``(image_size // patch_size // merge) ** 2`` tokens."""
    if projector_type not in ("mlp", "gemma3"):
        raise ValueError(f"unknown projector type {projector_type!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_patches = (image_size // patch_size) ** 2
    w = gguf.GGUFWriter(str(_tmp(path)), "clip")
    w.add_name("tiny-clip-projector")
    w.add_file_type(LlamaFileType.MOSTLY_F16)
    w.add_string("clip.projector_type", projector_type)
    w.add_bool("clip.has_vision_encoder", True)
    w.add_bool("clip.use_gelu", True)
    v = "clip.vision."
    w.add_uint32(v + "image_size", image_size)
    w.add_uint32(v + "patch_size", patch_size)
    w.add_uint32(v + "embedding_length", n_embd)
    w.add_uint32(v + "feed_forward_length", n_ff)
    w.add_uint32(v + "projection_dim", n_embd_text)
    w.add_uint32(v + "attention.head_count", n_head)
    w.add_float32(v + "attention.layer_norm_epsilon", 1e-6)
    w.add_uint32(v + "block_count", n_layer)
    w.add_array(v + "image_mean", [0.5, 0.5, 0.5])
    w.add_array(v + "image_std", [0.5, 0.5, 0.5])
    if projector_type == "gemma3":
        w.add_uint32(v + "projector.scale_factor", merge)
    # numpy shapes are ggml's reversed: the patch convolution is [n_embd, 3, patch, patch].
    w.add_tensor("v.patch_embd.weight", _weights(rng, (n_embd, 3, patch_size, patch_size), 0.2).astype(np.float16))
    w.add_tensor("v.position_embd.weight", _weights(rng, (n_patches, n_embd), 0.2))
    for i in range(n_layer):
        p = f"v.blk.{i}."
        for t in ("attn_q", "attn_k", "attn_v", "attn_out"):
            w.add_tensor(p + t + ".weight", _weights(rng, (n_embd, n_embd), 0.2).astype(np.float16))
            w.add_tensor(p + t + ".bias", np.zeros(n_embd, dtype=np.float32))
        for t in ("ln1", "ln2"):
            w.add_tensor(p + t + ".weight", np.ones(n_embd, dtype=np.float32))
            w.add_tensor(p + t + ".bias", np.zeros(n_embd, dtype=np.float32))
        w.add_tensor(p + "ffn_up.weight", _weights(rng, (n_ff, n_embd), 0.2).astype(np.float16))
        w.add_tensor(p + "ffn_up.bias", np.zeros(n_ff, dtype=np.float32))
        w.add_tensor(p + "ffn_down.weight", _weights(rng, (n_embd, n_ff), 0.2).astype(np.float16))
        w.add_tensor(p + "ffn_down.bias", np.zeros(n_embd, dtype=np.float32))
    if projector_type == "gemma3":
        # RMS-normed pooled patches, then one projection into the text model's embedding space.
        w.add_tensor("mm.soft_emb_norm.weight", np.ones(n_embd, dtype=np.float32))
        w.add_tensor("mm.input_projection.weight", _weights(rng, (n_embd, n_embd_text), 0.5).astype(np.float16))
        _write(w, path)
        return path
    # The MLP lands on the scale of the tiny llama's token embeddings (unit variance), so an image moves the output.
    w.add_tensor("mm.0.weight", _weights(rng, (n_embd_text, n_embd), 0.5).astype(np.float16))
    w.add_tensor("mm.0.bias", np.zeros(n_embd_text, dtype=np.float32))
    w.add_tensor("mm.2.weight", _weights(rng, (n_embd_text, n_embd_text), 0.5).astype(np.float16))
    w.add_tensor("mm.2.bias", np.zeros(n_embd_text, dtype=np.float32))
    _write(w, path)
    return path


def write_tiny_audio_projector(
    path: str | Path, n_embd_text: int = 64, n_embd: int = 32, n_head: int = 2, n_ff: int = 64,
    n_layer: int = 1, n_mel: int = 80, seed: int = 5678,
) -> Path:
    """A random-weight Whisper-encoder audio projector (``qwen2a``) for ``write_tiny_llama``'s embedding size.

    mtmd computes the log-mel frames itself (30 s windows at 16 kHz); the encoder halves them (a stride-2
    convolution, 1500 positions) and pools by two, so each 30 s window is 750 audio tokens."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(_tmp(path)), "clip")
    w.add_name("tiny-audio-projector")
    w.add_file_type(LlamaFileType.MOSTLY_F16)
    w.add_string("clip.projector_type", "qwen2a")
    w.add_bool("clip.has_audio_encoder", True)
    a = "clip.audio."
    w.add_uint32(a + "num_mel_bins", n_mel)
    w.add_uint32(a + "embedding_length", n_embd)
    w.add_uint32(a + "feed_forward_length", n_ff)
    w.add_uint32(a + "projection_dim", n_embd_text)
    w.add_uint32(a + "attention.head_count", n_head)
    w.add_float32(a + "attention.layer_norm_epsilon", 1e-5)
    w.add_uint32(a + "block_count", n_layer)

    def f16(shape: tuple[int, ...]) -> np.ndarray:
        return _weights(rng, shape, 0.2).astype(np.float16)

    # numpy shapes are ggml's reversed: conv1d kernels are [out, in, 3].
    w.add_tensor("a.conv1d.1.weight", f16((n_embd, n_mel, 3)))
    w.add_tensor("a.conv1d.1.bias", np.zeros((n_embd, 1), dtype=np.float32))
    w.add_tensor("a.conv1d.2.weight", f16((n_embd, n_embd, 3)))
    w.add_tensor("a.conv1d.2.bias", np.zeros((n_embd, 1), dtype=np.float32))
    w.add_tensor("a.position_embd.weight", _weights(rng, (1500, n_embd), 0.2))
    for i in range(n_layer):
        p = f"a.blk.{i}."
        for t in ("attn_q", "attn_k", "attn_v", "attn_out"):
            w.add_tensor(p + t + ".weight", f16((n_embd, n_embd)))
            if t != "attn_k":  # Whisper's key projection has no bias
                w.add_tensor(p + t + ".bias", np.zeros(n_embd, dtype=np.float32))
        for t in ("ln1", "ln2"):
            w.add_tensor(p + t + ".weight", np.ones(n_embd, dtype=np.float32))
            w.add_tensor(p + t + ".bias", np.zeros(n_embd, dtype=np.float32))
        w.add_tensor(p + "ffn_up.weight", f16((n_ff, n_embd)))
        w.add_tensor(p + "ffn_up.bias", np.zeros(n_ff, dtype=np.float32))
        w.add_tensor(p + "ffn_down.weight", f16((n_embd, n_ff)))
        w.add_tensor(p + "ffn_down.bias", np.zeros(n_embd, dtype=np.float32))
    w.add_tensor("a.post_ln.weight", np.ones(n_embd, dtype=np.float32))
    w.add_tensor("a.post_ln.bias", np.zeros(n_embd, dtype=np.float32))
    w.add_tensor("mm.a.fc.weight", _weights(rng, (n_embd_text, n_embd), 0.5).astype(np.float16))
    w.add_tensor("mm.a.fc.bias", np.zeros(n_embd_text, dtype=np.float32))
    _write(w, path)
    return path


def write_tiny_qwen2vl_projector(
    path: str | Path, n_embd_text: int = 64, n_embd: int = 32, n_head: int = 1, n_ff: int = 64, n_layer: int = 1,
    patch_size: int = 2, seed: int = 8765,
) -> Path:
    """A random-weight Qwen2-VL vision projector (``qwen2vl_merger``) for ``write_tiny_llama(arch="qwen2vl")``.

    Dynamic resolution: an image keeps its aspect, resized to a multiple of 2 x ``patch_size``; its 2 x 2 merged
    patches are its tokens, laid on a grid, so with an M-RoPE text model an image of ``nx`` x ``ny`` tokens
    advances the position by only ``max(nx, ny)``. (mtmd's warmup encodes a 2116-token image once at load.)"""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(_tmp(path)), "clip")
    w.add_name("tiny-qwen2vl-projector")
    w.add_file_type(LlamaFileType.MOSTLY_F16)
    w.add_string("clip.projector_type", "qwen2vl_merger")
    w.add_bool("clip.has_vision_encoder", True)
    w.add_bool("clip.use_gelu", True)
    v = "clip.vision."
    w.add_uint32(v + "image_size", 56)
    w.add_uint32(v + "patch_size", patch_size)
    w.add_uint32(v + "embedding_length", n_embd)
    w.add_uint32(v + "feed_forward_length", n_ff)
    w.add_uint32(v + "projection_dim", n_embd_text)
    w.add_uint32(v + "attention.head_count", n_head)
    w.add_float32(v + "attention.layer_norm_epsilon", 1e-6)
    w.add_uint32(v + "block_count", n_layer)
    w.add_array(v + "image_mean", [0.5, 0.5, 0.5])
    w.add_array(v + "image_std", [0.5, 0.5, 0.5])

    def f16(shape: tuple[int, ...], scale: float = 0.2) -> np.ndarray:
        return _weights(rng, shape, scale).astype(np.float16)

    # Two patch kernels (Qwen2-VL's temporal pair of frames; a still image goes through both).
    w.add_tensor("v.patch_embd.weight", f16((n_embd, 3, patch_size, patch_size)))
    w.add_tensor("v.patch_embd.weight.1", f16((n_embd, 3, patch_size, patch_size)))
    for i in range(n_layer):
        p = f"v.blk.{i}."
        for t in ("attn_q", "attn_k", "attn_v", "attn_out"):
            w.add_tensor(p + t + ".weight", f16((n_embd, n_embd)))
            w.add_tensor(p + t + ".bias", np.zeros(n_embd, dtype=np.float32))
        for t in ("ln1", "ln2"):
            w.add_tensor(p + t + ".weight", np.ones(n_embd, dtype=np.float32))
            w.add_tensor(p + t + ".bias", np.zeros(n_embd, dtype=np.float32))
        w.add_tensor(p + "ffn_up.weight", f16((n_ff, n_embd)))
        w.add_tensor(p + "ffn_up.bias", np.zeros(n_ff, dtype=np.float32))
        w.add_tensor(p + "ffn_down.weight", f16((n_embd, n_ff)))
        w.add_tensor(p + "ffn_down.bias", np.zeros(n_embd, dtype=np.float32))
    # The merger: 2 x 2 neighbouring patches (4 * n_embd) through an MLP into the text embedding space.
    w.add_tensor("mm.0.weight", f16((4 * n_embd, 4 * n_embd), 0.5))
    w.add_tensor("mm.0.bias", np.zeros(4 * n_embd, dtype=np.float32))
    w.add_tensor("mm.2.weight", f16((n_embd_text, 4 * n_embd), 0.5))
    w.add_tensor("mm.2.bias", np.zeros(n_embd_text, dtype=np.float32))
    _write(w, path)
    return path
