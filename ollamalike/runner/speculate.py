"""Speculative decoding: draft tokens proposed per slot, verified by the target in the same batch step.

Each step, after every generating slot has put its next token into the batch, ``Speculator.add_drafts``
appends up to ``k`` proposed continuation tokens per slot (logits on), taken from prompt lookup (the
slot's own prompt + output: the continuation of the most recent earlier occurrence of its last 4 or 3
tokens) or from a draft model (``runner/draft.py``). After the decode, ``verify`` samples the slot's
chain at its token's logits and then at each draft position in turn, for as long as the sampled
token equals the proposed one, so every emitted token is sampled from the target's logits in the
context of the tokens really emitted before it, exactly one sampler call per emitted token (the
chain's penalties, grammar and RNG advance exactly as without speculation). Positions after the
last accepted draft are removed from the KV cache and from ``slot.cache``.

Why this is exact for every request, sampled ones too: a proposal is one token (a point mass),
and "sample t from the target, accept the draft iff t equals it" accepts it with probability p(draft)
and otherwise yields p conditioned on t != draft, which is what speculative rejection sampling
gives for a point-mass proposal. The only way output can differ is numerical: a token's logits are
computed in a bigger batch (see docs/internals.md, "Speculative decoding").

Adaptive: a slot's draft length doubles after a fully accepted draft and falls back to what was
accepted after a partial one; after a draft with nothing accepted the slot waits 1, 2, 4 … 16 steps
before proposing again, so a slot whose text does not repeat costs (almost) nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

import llama_cpp

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from ollamalike.runner.llama import Loaded
    from ollamalike.runner.request import Request
    from ollamalike.runner.slots import Slot

NGRAM_MAX = 4  # the longest tail looked up; the longest match wins
NGRAM_MIN = 3  # shorter matches (", and", "of the") predict too little to pay for a draft on a CPU
DRAFT_START = 4  # a new request's first draft length
DRAFT_MAX = 16  # per slot and step
DRAFT_MIN = 2
COOLDOWN_MAX = 16  # steps a slot waits after a draft of which nothing was accepted (doubling)
# "exact" mode: a step's batch stays within the rows llama.cpp's CPU kernels for repacked quantized
# weights compute one by one (gemv); from 4 rows on they go through a 4-row gemm whose results differ
# in the last bits, so a draft verified there may flip a near-tie (docs/internals.md).
EXACT_ROWS = 3



class _Cancellable(Protocol):
    cancelled: bool


R = TypeVar("R", bound=_Cancellable)
Sample = Callable[["Slot[R]", int], "tuple[int, npt.NDArray[np.float32] | None]"]
OnToken = Callable[["Slot[R]", int, "npt.NDArray[np.float32] | None"], None]


class Drafter(Protocol):
    """A source of proposals beside prompt lookup (a draft model)."""

    def propose(self, seq: int, history: Sequence[int], k: int) -> list[int]:
        """Up to ``k`` tokens that may follow ``history`` (the slot's KV tokens, its next token last)."""
        ...


class NgramIndex:
    """For every n-gram (n = 1..NGRAM_MAX) of a token history: where its most recent continuation starts.

    Appending one token updates NGRAM_MAX entries, so a lookup costs the same at any history length.
    """

    def __init__(self) -> None:
        self.tokens: list[int] = []
        self._maps: list[dict[tuple[int, ...], int]] = [{} for _ in range(NGRAM_MAX)]

    def extend(self, tokens: Sequence[int]) -> None:
        for t in tokens:
            self.append(t)

    def append(self, token: int) -> None:
        toks = self.tokens
        i = len(toks)
        for n in range(1, min(NGRAM_MAX, i) + 1):
            self._maps[n - 1][tuple(toks[i - n : i])] = i
        toks.append(token)

    def propose(self, k: int) -> list[int]:
        """Up to ``k`` tokens that followed the latest earlier occurrence of the longest matching tail."""
        toks = self.tokens
        size = len(toks)
        for n in range(min(NGRAM_MAX, size), NGRAM_MIN - 1, -1):
            start = self._maps[n - 1].get(tuple(toks[size - n :]))
            if start is None:
                continue
            out = toks[start : start + k]
            for i, t in enumerate(out):
                if t < 0:  # an image position's placeholder: nothing to propose past it
                    return out[:i]
            return out
        return []


@dataclass
class _SlotState:
    admitted: int  # the request this state belongs to (Slot.admitted)
    index: NgramIndex = field(default_factory=NgramIndex)
    indexed: int = 0  # generated tokens already in the index
    k: int = DRAFT_START
    wait: int = 0  # steps left before the next proposal
    misses: int = 0  # drafts in a row of which nothing was accepted
    drafts: list[int] = field(default_factory=list)  # this step's proposal
    indices: list[int] = field(default_factory=list)  # their batch indices
    base: int = 0  # len(slot.cache) before this step's own token


@dataclass
class SpecStats:
    proposed: int = 0
    accepted: int = 0
    drafts: int = 0
    best: int = 0  # the most drafts accepted in one step


class Speculator(Generic[R]):
    """The engine's speculation state: one ``_SlotState`` per slot, reset when a new request takes it."""

    def __init__(self, n_slots: int, n_ctx_slot: int, drafter: Drafter | None = None, ngram: bool = True,
                 exact: bool = False, max_streams: int | None = None) -> None:
        self.n_ctx_slot = n_ctx_slot
        self.max_streams = max_streams
        self.drafter = drafter
        self.ngram = ngram
        self.exact = exact
        self.states: list[_SlotState | None] = [None] * n_slots
        self.stats = SpecStats()
        self.enabled = True  # off for good once the KV cache refuses to drop a tail (recurrent models)

    def _state(self, slot: Slot[R], prompt: Sequence[int], generated: Sequence[int]) -> _SlotState:
        st = self.states[slot.seq]
        if st is None or st.admitted != slot.admitted:
            st = _SlotState(admitted=slot.admitted)
            if self.ngram:
                st.index.extend(prompt)
            self.states[slot.seq] = st
        if self.ngram and st.indexed < len(generated):
            st.index.extend(generated[st.indexed :])
            st.indexed = len(generated)
        return st

    def _propose(self, slot: Slot[R], st: _SlotState, k: int) -> list[int]:
        # The token this step decodes is the last of the history already: the prompt's last token,
        # or the last generated one.
        drafts = st.index.propose(k) if self.ngram else []
        if len(drafts) < DRAFT_MIN and self.drafter is not None:
            drafts = self.drafter.propose(slot.seq, slot.cache, k)
        return drafts

    def add_drafts(self, slots: Sequence[Slot[R]], batch: llama_cpp.llama_batch, n: int, n_batch: int,
                   history: Callable[[Slot[R]], tuple[Sequence[int], Sequence[int]] | None]) -> int:
        """Append drafts for slots whose token is in this step's batch (``slot.logit_index >= 0``).

        ``history(slot)`` is (prompt, generated) for a slot that may speculate, None for one that
        may not. Returns the batch size after the drafts.
        """
        if not self.enabled:
            return n
        if self.exact and any(s.req is not None and s.in_prompt and s.logit_index < 0 for s in slots):
            return n  # a prompt chunk joins this step: its rows would push the batch into the gemm kernels
        if self.max_streams is not None and sum(s.req is not None and s.logit_index >= 0 for s in slots) > self.max_streams:
            return n  # several streams already share the step (see speculator())
        for slot in slots:
            if slot.logit_index < 0 or slot.req is None:
                continue
            hist = history(slot)
            if hist is None:
                continue
            st = self._state(slot, *hist)
            st.drafts, st.indices = [], []
            if st.wait > 0:
                st.wait -= 1
                continue
            st.base = len(slot.cache) - 1
            # Room: the batch, and the slot's context (its next token needs a position too).
            k = min(st.k, (EXACT_ROWS if self.exact else n_batch) - n, self.n_ctx_slot - len(slot.cache) - 1)
            if k <= 0:
                continue
            drafts = self._propose(slot, st, k)[:k]
            if not drafts:
                continue
            pos = len(slot.cache)
            for i, t in enumerate(drafts):
                batch.token[n] = t
                batch.pos[n] = pos + i  # type: ignore[call-overload]  # llama-cpp-python's stub types pos wrongly
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = slot.seq
                batch.logits[n] = 1
                st.indices.append(n)
                n += 1
            st.drafts = drafts
            slot.cache.extend(drafts)
        return n

    def drafted(self, slot: Slot[R]) -> bool:
        st = self.states[slot.seq]
        return st is not None and st.admitted == slot.admitted and bool(st.drafts)

    def verify(self, slot: Slot[R], idx: int, sample: Sample[R], on_token: OnToken[R],
               seq_rm: Callable[[int, int], bool]) -> bool:
        """Sample at the slot's own token (batch index ``idx``), then at each draft while the sampled
        token equals it; drop the KV positions past the last accepted draft. ``on_token`` ends the
        request (stop, length, end of generation) exactly where it would without speculation.
        False: the KV cache refused to drop the tail (then speculation is off from now on, and the
        caller must start the sequence over)."""
        st = self.states[slot.seq]
        assert st is not None
        drafts, indices = st.drafts, st.indices
        st.drafts, st.indices = [], []
        accepted = 0
        token, scored = sample(slot, idx)
        for draft, didx in zip(drafts, indices, strict=True):
            on_token(slot, token, scored)
            if slot.req is None or slot.req.cancelled or token != draft:
                break
            slot.next_token = None  # the draft is in the KV cache already
            accepted += 1
            token, scored = sample(slot, didx)
        else:
            on_token(slot, token, scored)
        self._adapt(st, len(drafts), accepted)
        keep = st.base + 1 + accepted
        if keep < len(slot.cache):
            if not seq_rm(keep, -1):
                self.enabled = False
                return False
            del slot.cache[keep:]
        return True

    def _adapt(self, st: _SlotState, proposed: int, accepted: int) -> None:
        self.stats.drafts += 1
        self.stats.proposed += proposed
        self.stats.accepted += accepted
        self.stats.best = max(self.stats.best, accepted)
        if accepted == proposed:
            st.k = min(DRAFT_MAX, st.k * 2)
            st.misses = 0
        elif accepted == 0:
            st.k = DRAFT_MIN
            st.misses += 1
            st.wait = min(COOLDOWN_MAX, 1 << (st.misses - 1))
        else:
            st.k = max(DRAFT_MIN, accepted + 1)
            st.misses = 0


def speculator(loaded: Loaded, n_slots: int, mode: str, drafter: Drafter | None) -> Speculator[Request] | None:
    """The engine's speculator for ``mode`` ("on", "exact", "off"), or None where it would not run: off,
    a recurrent or hybrid model (its memory cannot drop a rejected tail), or "exact" without flash
    attention (then a token's attention already differs between a 1- and a 2-row batch)."""
    if mode == "off":
        return None
    if loaded.model and (llama_cpp.llama_model_is_recurrent(loaded.model) or llama_cpp.llama_model_is_hybrid(loaded.model)):
        return None
    if mode == "exact" and (loaded.opts is None or loaded.opts.flash_attn == "off"):
        print('warning: speculative decoding "exact" needs flash attention: not speculating', file=sys.stderr, flush=True)
        return None
    # On a CPU a batch's cost grows with its rows (a 2-row step ~2x a 1-row one), and a slot with drafts
    # beside slots without splits llama.cpp's batch into more passes over the weights: measured at 8
    # clients on Gemma 3, speculating every stream gave 0.83x llama-server's aggregate. There it drafts
    # for a lone stream only; on a GPU verification rows are nearly free.
    on_cpu = loaded.opts is None or loaded.opts.gpu_layers == 0
    return Speculator(n_slots, loaded.n_ctx_slot, drafter, exact=mode == "exact", max_streams=1 if on_cpu else None)


def spec_history(slot: Slot[Request]) -> tuple[list[int], list[int]] | None:
    """What a slot's drafts are looked up in (prompt, output); None: it does not speculate (a prompt
    with images: their positions hold no token ids to match or to feed a draft model)."""
    req = slot.req
    if req is None or req.media is not None:
        return None
    return req.prompt, slot.generated
