"""Embeddings: several inputs evaluated together (one sequence id each), pooled and L2-normalised.

Runs on the engine thread of a runner started with ``--embedding``. Inputs are packed into as few
``llama_decode`` calls as the batch size and the number of sequence ids allow.
"""

from __future__ import annotations

import math
from typing import Any

import llama_cpp

from ollamalike.runner.llama import Loaded


def embed_batch(m: Loaded, batch: Any, n_seq_max: int, inputs: list[list[int]]) -> list[list[float]]:
    """One pooled, normalised vector per input (inputs are already tokenized and truncated)."""
    out: list[list[float]] = []
    group: list[list[int]] = []
    used = 0
    for tokens in inputs:
        if not tokens:
            raise ValueError("cannot embed an empty input")
        if len(tokens) > m.n_batch:
            raise ValueError(f"input of {len(tokens)} tokens exceeds the batch size {m.n_batch}")
        if group and (used + len(tokens) > m.n_batch or len(group) >= n_seq_max):
            out.extend(_decode_group(m, batch, group))
            group, used = [], 0
        group.append(tokens)
        used += len(tokens)
    if group:
        out.extend(_decode_group(m, batch, group))
    return out


def _decode_group(m: Loaded, batch: Any, group: list[list[int]]) -> list[list[float]]:
    if m.mem:
        llama_cpp.llama_memory_clear(m.mem, True)
    n = 0
    for seq, tokens in enumerate(group):
        for pos, tok in enumerate(tokens):
            batch.token[n] = tok
            batch.pos[n] = pos
            batch.n_seq_id[n] = 1
            batch.seq_id[n][0] = seq
            batch.logits[n] = 1
            n += 1
    batch.n_tokens = n
    rc = llama_cpp.llama_decode(m.ctx, batch)
    if rc != 0:
        raise RuntimeError(f"llama_decode failed with status {rc} while embedding")
    vectors = []
    for seq in range(len(group)):
        ptr = llama_cpp.llama_get_embeddings_seq(m.ctx, seq)
        if not ptr:
            raise RuntimeError("llama.cpp returned no pooled embedding for a sequence")
        vec = [float(x) for x in ptr[: m.n_embd]]
        norm = math.sqrt(sum(x * x for x in vec))
        vectors.append([x / norm for x in vec] if norm > 0 else vec)
    if m.mem:
        llama_cpp.llama_memory_clear(m.mem, True)
    return vectors
