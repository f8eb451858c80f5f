"""Small GGUF files for tests: valid ones written with gguf.GGUFWriter, hostile ones built byte by byte."""

from __future__ import annotations

import struct
from pathlib import Path

import gguf
import numpy as np

MAGIC = struct.pack("<I", gguf.GGUF_MAGIC)


def save(w: gguf.GGUFWriter) -> None:
    """Write out everything added to ``w`` (header, metadata, tensors) and close the file."""
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_llama(path: Path, *, n_layer: int = 2, vocab: int = 100, file_type: int | None = 1, arch: str = "llama",
                pooling: int | None = None, dtype: type = np.float16) -> Path:
    """A llama-style model: metadata, a vocabulary and F16 2-D weights with F32 norms (all zeros)."""
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name("tiny-test")
    w.add_context_length(2048)
    w.add_embedding_length(64)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(128)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    if file_type is not None:
        w.add_file_type(file_type)
    if pooling is not None:
        w.add_pooling_type(gguf.PoolingType(pooling))
    w.add_tokenizer_model("llama")
    w.add_token_list(["<unk>", "<s>", "</s>"] + [f"tok{i}" for i in range(vocab - 3)])
    w.add_token_scores([0.0] * vocab)
    w.add_token_types([1] * vocab)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_chat_template("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    w.add_tensor("token_embd.weight", np.zeros((vocab, 64), dtype))
    for b in range(n_layer):
        w.add_tensor(f"blk.{b}.attn_norm.weight", np.ones(64, np.float32))
        w.add_tensor(f"blk.{b}.attn_q.weight", np.zeros((64, 64), dtype))
        w.add_tensor(f"blk.{b}.ffn_up.weight", np.zeros((128, 64), dtype))
    w.add_tensor("output_norm.weight", np.ones(64, np.float32))
    w.add_tensor("output.weight", np.zeros((vocab, 64), dtype))
    save(w)
    return path


def header(version: int = 3, n_tensors: int = 0, n_kv: int = 0, magic: bytes = MAGIC) -> bytes:
    return magic + struct.pack("<IQQ", version, n_tensors, n_kv)


def gstr(text: str | bytes, length: int | None = None) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(data) if length is None else length) + data


def kv_str(key: str, value: str) -> bytes:
    return gstr(key) + struct.pack("<I", 8) + gstr(value)


def kv_u32(key: str, value: int) -> bytes:
    return gstr(key) + struct.pack("<II", 4, value)


def tensor_info(name: str, shape: tuple[int, ...], ggml_type: int = 0, offset: int = 0) -> bytes:
    return gstr(name) + struct.pack("<I", len(shape)) + b"".join(struct.pack("<Q", d) for d in shape) + struct.pack(
        "<IQ", ggml_type, offset
    )


def minimal(kvs: list[bytes], tensors: list[bytes], data: bytes = b"", alignment: int = 32) -> bytes:
    """A hand-built file: header, the given KV and tensor-info records, padding, then ``data``."""
    body = header(n_tensors=len(tensors), n_kv=len(kvs)) + b"".join(kvs) + b"".join(tensors)
    pad = (-len(body)) % alignment if alignment > 0 else 0
    return body + b"\0" * pad + data
