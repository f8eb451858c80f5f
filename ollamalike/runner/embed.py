"""Embeddings: inputs evaluated (one sequence id each), pooled and L2-normalised.

Runs on the engine thread. A runner started with ``--embedding`` (an embedding model) packs the
inputs into its own context, as few ``llama_decode`` calls as the batch size and the number of
sequence ids allow. A chat model's runner embeds in a ``SideContext``: a second llama.cpp context
on the same loaded weights, made on first use and grown to the longest input seen, so the
generation context (its KV cache, its batches, the sequences in flight) is never touched and a
generation's output stays exactly what it is alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import llama_cpp

from ollamalike.runner.llama import Loaded, embedding_context

_MIN_SIDE_CTX = 256


def embedding_limit(m: Loaded) -> int:
    """The longest input an embed takes: an embedding model's batch, or a chat model's slot context."""
    train = llama_cpp.llama_model_n_ctx_train(m.model) or m.n_ctx_slot
    if m.opts is not None and m.opts.embedding:
        return min(m.n_ctx_slot, m.n_batch, train)
    return min(m.n_ctx_slot, train)


def run_embed(m: Loaded, batch: Any, n_slots: int, side: SideContext | None, inputs: list[list[int]],
              done: Callable[[list[list[float]] | None, str | None], None]) -> SideContext | None:
    """One embed job on the engine thread; returns the side context (made here on a chat model's first embed)."""
    try:
        if m.opts is not None and m.opts.embedding:
            vectors = embed_batch(m, batch, n_slots, inputs)
        else:
            if side is None:
                side = SideContext(m, embedding_limit(m))
            vectors = side.embed(inputs)
        done(vectors, None)
    except Exception as e:  # reported to the caller; the engine keeps serving
        done(None, str(e))
    return side


def embed_batch(m: Loaded, batch: Any, n_seq_max: int, inputs: list[list[int]]) -> list[list[float]]:
    """One pooled, normalised vector per input (inputs are already tokenized and truncated)."""
    return _embed_packed(m.ctx, m.mem, m.n_embd, m.n_batch, batch, n_seq_max, inputs)


def _embed_packed(ctx: Any, mem: Any, n_embd: int, n_batch: int, batch: Any, n_seq_max: int,
                  inputs: list[list[int]]) -> list[list[float]]:
    out: list[list[float]] = []
    group: list[list[int]] = []
    used = 0
    for tokens in inputs:
        if not tokens:
            raise ValueError("cannot embed an empty input")
        if len(tokens) > n_batch:
            raise ValueError(f"input of {len(tokens)} tokens exceeds the batch size {n_batch}")
        if group and (used + len(tokens) > n_batch or len(group) >= n_seq_max):
            out.extend(_decode_group(ctx, mem, n_embd, batch, group))
            group, used = [], 0
        group.append(tokens)
        used += len(tokens)
    if group:
        out.extend(_decode_group(ctx, mem, n_embd, batch, group))
    return out


def _decode_group(ctx: Any, mem: Any, n_embd: int, batch: Any, group: list[list[int]]) -> list[list[float]]:
    if mem:
        llama_cpp.llama_memory_clear(mem, True)
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
    rc = llama_cpp.llama_decode(ctx, batch)
    if rc != 0:
        raise RuntimeError(f"llama_decode failed with status {rc} while embedding")
    vectors = []
    for seq in range(len(group)):
        ptr = llama_cpp.llama_get_embeddings_seq(ctx, seq)
        if not ptr:
            raise RuntimeError("llama.cpp returned no pooled embedding for a sequence")
        vec = [float(x) for x in ptr[:n_embd]]
        norm = math.sqrt(sum(x * x for x in vec))
        vectors.append([x / norm for x in vec] if norm > 0 else vec)
    if mem:
        llama_cpp.llama_memory_clear(mem, True)
    return vectors


class SideContext:
    """The embedding context of a chat model's runner (engine thread only)."""

    def __init__(self, m: Loaded, limit: int) -> None:
        self.m = m
        self.limit = limit  # the longest input it will take (the slot context, the training context)
        self.n_ctx = 0
        self.ctx: Any = None
        self.batch: Any = None

    def embed(self, inputs: list[list[int]]) -> list[list[float]]:
        longest = max((len(t) for t in inputs), default=0)
        if longest > self.limit:
            raise ValueError(f"input of {longest} tokens exceeds the context size {self.limit}")
        self._fit(longest)
        mem = llama_cpp.llama_get_memory(self.ctx)
        return _embed_packed(self.ctx, mem, self.m.n_embd, self.n_ctx, self.batch, 1, inputs)

    def _fit(self, n_tokens: int) -> None:
        """A context that holds ``n_tokens`` in one micro-batch: sizes double from 256 up to the limit,
        so a few long inputs do not remake it every time and short ones keep it small."""
        if self.ctx is not None and n_tokens <= self.n_ctx:
            return
        size = _MIN_SIDE_CTX
        while size < n_tokens:
            size *= 2
        size = min(size, self.limit)
        self.close()
        ctx = embedding_context(self.m, size)
        if ctx is None:
            raise RuntimeError(f"llama.cpp could not create an embedding context of {size} tokens (out of memory?)")
        self.ctx, self.n_ctx = ctx, size
        self.batch = llama_cpp.llama_batch_init(size, 0, 1)

    def close(self) -> None:
        if self.batch is not None:
            llama_cpp.llama_batch_free(self.batch)
            self.batch = None
        if self.ctx is not None:
            llama_cpp.llama_free(self.ctx)
            self.ctx = None
            self.n_ctx = 0
