"""Embeddings: inputs evaluated (one sequence id each), pooled and L2-normalised.

Runs on the engine thread. A runner started with ``--embedding`` (an embedding model) packs the
inputs into its own context, as few ``llama_decode`` calls as the batch size and the number of
sequence ids allow. A chat model's runner embeds in a ``SideContext``: a second llama.cpp context
on the same loaded weights, made on first use and grown to the longest input seen, so the
generation context (its KV cache, its batches, the sequences in flight) is never touched and a
generation's output stays exactly what it is alone.

Jobs wait in an ``EmbedQueue`` and are served in bounded chunks (one ``llama_decode`` each), round
robin between the jobs and interleaved with the engine's generation steps: a big embed request
neither starves the generations in flight nor the next small embed, and a job its client abandoned
is dropped at the next chunk.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import llama_cpp

from ollamalike.runner.llama import Loaded, embedding_context

_MIN_SIDE_CTX = 256


EmbedDone = Callable[[list[list[float]] | None, str | None], None]


def embedding_limit(m: Loaded) -> int:
    """The longest input an embed takes: an embedding model's batch, or a chat model's slot context."""
    train = llama_cpp.llama_model_n_ctx_train(m.model) or m.n_ctx_slot
    if m.opts is not None and m.opts.embedding:
        return min(m.n_ctx_slot, m.n_batch, train)
    return min(m.n_ctx_slot, train)


@dataclass
class EmbedJob:
    """One embed request: tokenized, truncated inputs; ``done(vectors, None)`` or ``done(None, error)``
    is called once, on the engine thread, unless the job was cancelled first."""

    inputs: list[list[int]]
    done: EmbedDone
    cancelled: bool = False  # set by the server when the client went away; checked before every chunk
    vectors: list[list[float]] = field(default_factory=list)  # of the inputs embedded so far, in order


class EmbedQueue:
    """The embed jobs of one engine (engine thread only; ``EmbedJob.cancelled`` is the one cross-thread flag)."""

    def __init__(self, m: Loaded, batch: llama_cpp.llama_batch, n_seq_max: int, limit: int, own_context: bool) -> None:
        self.m = m
        self.batch = batch  # the engine's batch: an embedding model's runner generates nothing
        self.n_seq_max = n_seq_max
        self.own_context = own_context  # an embedding model's runner: embed in the model's context
        self.limit = limit
        self.side: SideContext | None = None  # a chat model's runner: made on the first embed
        self.jobs: deque[EmbedJob] = deque()
        self.inputs_pending = 0  # read by /health from the loop thread (an int: a consistent read)
        self.inputs_embedded = 0

    def add(self, job: EmbedJob) -> None:
        self.jobs.append(job)
        self.inputs_pending += len(job.inputs)

    def step(self) -> bool:
        """One chunk (one llama_decode) of the job at the head, which then goes to the back.
        False when no job is waiting."""
        while self.jobs and self.jobs[0].cancelled:
            self._drop(self.jobs.popleft())
        if not self.jobs:
            return False
        job = self.jobs.popleft()
        try:
            start = len(job.vectors)
            vectors = self._chunk(job.inputs, start)
        except Exception as e:  # reported to the caller; the engine keeps serving
            self._drop(job)
            job.done(None, str(e))
            return True
        job.vectors.extend(vectors)
        self.inputs_pending -= len(vectors)
        self.inputs_embedded += len(vectors)
        if len(job.vectors) >= len(job.inputs):
            job.done(job.vectors, None)
        else:
            self.jobs.append(job)
        return True

    def close(self, reason: str) -> None:
        while self.jobs:
            job = self.jobs.popleft()
            self._drop(job)
            if not job.cancelled:
                job.done(None, reason)
        if self.side is not None:
            self.side.close()

    def _drop(self, job: EmbedJob) -> None:
        self.inputs_pending -= len(job.inputs) - len(job.vectors)

    def _chunk(self, inputs: list[list[int]], start: int) -> list[list[float]]:
        if self.own_context:
            end = _group_end(inputs, start, self.m.n_batch, self.n_seq_max)
            return _decode_group(self.m.ctx, self.m.mem, self.m.n_embd, self.batch, inputs[start:end])
        if self.side is None:
            self.side = SideContext(self.m, self.limit)
        return self.side.embed(inputs[start : start + 1])


def _group_end(inputs: list[list[int]], start: int, n_batch: int, n_seq_max: int) -> int:
    """The end of the group of inputs from ``start`` that one llama_decode takes (at least one input)."""
    end, used = start, 0
    while end < len(inputs):
        tokens = inputs[end]
        if not tokens:
            raise ValueError("cannot embed an empty input")
        if len(tokens) > n_batch:
            raise ValueError(f"input of {len(tokens)} tokens exceeds the batch size {n_batch}")
        if end > start and (used + len(tokens) > n_batch or end - start >= n_seq_max):
            break
        used += len(tokens)
        end += 1
    return end


def _embed_packed(ctx: llama_cpp.llama_context_p, mem: llama_cpp.llama_memory_t | None, n_embd: int, n_batch: int,
                  batch: llama_cpp.llama_batch, n_seq_max: int,
                  inputs: list[list[int]]) -> list[list[float]]:
    out: list[list[float]] = []
    start = 0
    while start < len(inputs):
        end = _group_end(inputs, start, n_batch, n_seq_max)
        out.extend(_decode_group(ctx, mem, n_embd, batch, inputs[start:end]))
        start = end
    return out


def _decode_group(ctx: llama_cpp.llama_context_p, mem: llama_cpp.llama_memory_t | None, n_embd: int,
                  batch: llama_cpp.llama_batch, group: list[list[int]]) -> list[list[float]]:
    if mem:
        llama_cpp.llama_memory_clear(mem, True)
    n = 0
    for seq, tokens in enumerate(group):
        for pos, tok in enumerate(tokens):
            batch.token[n] = tok
            # llama-cpp-python's stubs type ``pos`` as an array of arrays; it is llama_pos * (one per token).
            batch.pos[n] = pos  # type: ignore[call-overload]
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
        self.ctx: llama_cpp.llama_context_p | None = None
        self.batch: llama_cpp.llama_batch | None = None

    def embed(self, inputs: list[list[int]]) -> list[list[float]]:
        longest = max((len(t) for t in inputs), default=0)
        if longest > self.limit:
            raise ValueError(f"input of {longest} tokens exceeds the context size {self.limit}")
        ctx, batch = self._fit(longest)
        mem = llama_cpp.llama_get_memory(ctx)
        return _embed_packed(ctx, mem, self.m.n_embd, self.n_ctx, batch, 1, inputs)

    def _fit(self, n_tokens: int) -> tuple[llama_cpp.llama_context_p, llama_cpp.llama_batch]:
        """A context that holds ``n_tokens`` in one micro-batch: sizes double from 256 up to the limit,
        so a few long inputs do not remake it every time and short ones keep it small."""
        if self.ctx is not None and self.batch is not None and n_tokens <= self.n_ctx:
            return self.ctx, self.batch
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
        return ctx, self.batch

    def close(self) -> None:
        if self.batch is not None:
            llama_cpp.llama_batch_free(self.batch)
            self.batch = None
        if self.ctx is not None:
            llama_cpp.llama_free(self.ctx)
            self.ctx = None
            self.n_ctx = 0
