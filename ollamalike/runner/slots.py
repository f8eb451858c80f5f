"""Sequence slots: what one llama.cpp sequence id is doing, and how a request picks a slot.

A slot's ``cache`` lists exactly the tokens whose KV entries live in the context for its sequence
(position i holds cache[i], but past an M-RoPE model's image: see ``pos_offset``); it survives the
request so the next one can reuse a shared prefix.
Pure Python (no llama_cpp at import), so slot choice and truncation are unit-testable on their own.
A slot is generic in the request it serves (the engine's ``Request``), which it only holds.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    import llama_cpp

    from ollamalike.runner.logprobs import LogprobQueue
    from ollamalike.runner.sampling import TextStream

_admissions = itertools.count(1)
R = TypeVar("R")


@dataclass
class Slot(Generic[R]):
    seq: int
    cache: list[int] = field(default_factory=list)
    req: R | None = None
    sampler: llama_cpp.llama_sampler_p | None = None
    grammar: llama_cpp.llama_sampler_p | None = None
    text: TextStream | None = None
    prompt: list[int] = field(default_factory=list)
    prompt_done: int = 0  # prompt tokens already in the cache (reused or evaluated)
    prompt_evaluated: int = 0  # prompt tokens this request actually evaluated
    in_prompt: bool = False
    next_token: int | None = None
    logit_index: int = -1
    generated: list[int] = field(default_factory=list)
    limit: int = 0
    admitted: int = 0
    last_used: float = 0.0
    t_prompt: int = 0
    prompt_ns: int = 0
    t_gen: int = 0
    logprobs: LogprobQueue | None = None  # the request asked for logprobs (set after ``begin``)
    # Cache entries minus decoder positions: an M-RoPE model's image fills more KV cells than the
    # positions it advances (``vision.Span``). 0 for every other model.
    pos_offset: int = 0

    @property
    def next_pos(self) -> int:
        """The decoder position of the next entry appended to the cache."""
        return len(self.cache) - self.pos_offset

    def common_prefix(self, tokens: Sequence[int]) -> int:
        n = 0
        for a, b in zip(self.cache, tokens, strict=False):
            if a != b:
                break
            n += 1
        return n

    def begin(
        self, req: R, prompt: list[int], reused: int, sampler: llama_cpp.llama_sampler_p, text: TextStream,
        limit: int, grammar: llama_cpp.llama_sampler_p | None = None,
    ) -> None:
        self.req = req
        self.grammar = grammar
        self.prompt = prompt
        self.prompt_done = reused
        self.prompt_evaluated = 0
        self.in_prompt = True
        self.sampler = sampler
        self.text = text
        self.next_token = None
        self.logit_index = -1
        self.generated = []
        self.limit = limit
        self.admitted = next(_admissions)
        self.t_prompt = 0
        self.prompt_ns = 0
        self.t_gen = 0

    def end(self) -> None:
        """Free the slot; its cache (and KV) stays for prefix reuse."""
        if self.sampler is not None or self.grammar is not None:
            import llama_cpp  # only the runner process gets here

            for s in (self.sampler, self.grammar):
                if s is not None:
                    llama_cpp.llama_sampler_free(s)
        self.sampler = None
        self.grammar = None
        self.req = None
        self.text = None
        self.logprobs = None
        self.in_prompt = False
        self.next_token = None
        self.logit_index = -1
        self.last_used = time.monotonic()


# What a busy neighbour is worth, in prompt tokens reused: llama.cpp runs a batch over per-slot KV
# streams as micro-batches of consecutive sequence ids, so a slot apart from the busy ones costs every
# later step another pass over the weights, while a few shared tokens (a BOS, a template's first line)
# save next to nothing. A long shared prefix (a returning conversation) still wins.
PACK_BONUS = 32


def choose_slot(slots: Sequence[Slot[R]], prompt: Sequence[int]) -> Slot[R] | None:
    """The free slot sharing the longest prefix with ``prompt``, counting ``PACK_BONUS`` tokens for each
    busy neighbour (sequence id one below or above); ties go to the least recently used."""
    free = [s for s in slots if s.req is None]
    if not free:
        return None
    busy = {s.seq for s in slots if s.req is not None}

    def score(s: Slot[R]) -> tuple[int, float]:
        neighbours = (s.seq - 1 in busy) + (s.seq + 1 in busy)
        return s.common_prefix(prompt) + PACK_BONUS * neighbours, -s.last_used

    return max(free, key=score)


def keep_count(num_keep: int, prompt: Sequence[int], bos: int | None, n_ctx_slot: int) -> int:
    """Tokens kept at the start when the context overflows (Ollama's num_keep; -1 keeps the prompt).

    A leading BOS is always kept on top of num_keep; the result leaves room to discard something.
    """
    keep = len(prompt) if num_keep < 0 else num_keep
    if bos is not None and prompt and prompt[0] == bos:
        keep += 1
    return max(0, min(keep, len(prompt), n_ctx_slot // 2))


def shift_keep(keep: int, media_end: int, n_cached: int) -> int | None:
    """Where a context shift's discarded run starts in a full slot of ``n_cached`` cells, or None (no shift:
    the request ends with "length"). ``keep`` is ``keep_count``'s; ``media_end`` is where the prompt's last
    image ends (0 without images): nothing before it is discarded, since an image cut in two or lost
    cannot be rebuilt from its positions. At least one cell is discarded and one kept after the run."""
    keep = max(min(keep, n_cached - 2), media_end)
    return keep if 0 <= keep <= n_cached - 2 else None
