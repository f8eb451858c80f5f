"""Choosing a slot's next token from the logits of a step (the engine thread only).

A plain greedy request (temperature 0, no penalties, no grammar, no logprobs: its chain is just
llama.cpp's greedy sampler, which keeps no state) takes the argmax of the logits where llama.cpp
left them, through a numpy view: no candidates array of the vocabulary's size is built each token
(at a 262k vocabulary that was the engine thread's largest cost outside ``llama_decode``). Ties go to
the lowest token id, as the greedy sampler's strict ``>`` scan and numpy's argmax both do. Every
other request goes through its sampler chain; a grammar or logprobs through ``constrained.Candidates``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import llama_cpp
import numpy as np
import numpy.typing as npt

from ollamalike.runner.constrained import Candidates
from ollamalike.runner.sampling import SamplingParams, has_penalties

if TYPE_CHECKING:
    from ollamalike.runner.llama import Loaded
    from ollamalike.runner.request import Request
    from ollamalike.runner.slots import Slot


def plain_greedy(params: SamplingParams) -> bool:
    """Whether ``build_sampler`` makes a chain of the greedy sampler alone for ``params``."""
    return params.temperature <= 0.0 and not has_penalties(params)


def argmax_logits(ctx: llama_cpp.llama_context_p, idx: int, n_vocab: int) -> int:
    """The token with the highest logit at batch output ``idx`` (the first of equal ones), read in place."""
    logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, idx), shape=(n_vocab,))
    return int(logits.argmax())


class TokenPicker:
    """Samples for the engine's slots; owns the one reusable candidates array (made when first needed)."""

    def __init__(self, m: Loaded) -> None:
        self.m = m
        self._candidates: Candidates | None = None
        self.fast = True  # tests turn it off to compare with the sampler chain

    def _cands(self) -> Candidates:
        if self._candidates is None:
            self._candidates = Candidates(self.m.n_vocab)
        return self._candidates

    def pick(self, slot: Slot[Request], idx: int) -> tuple[int, npt.NDArray[np.float32] | None]:
        """The next token at output ``idx``, and (only when the request asked for logprobs) the logits
        its logprobs are taken from. The slot's samplers accept the token."""
        req, sampler, m = slot.req, slot.sampler, self.m
        assert req is not None and sampler is not None  # set with the request (Slot.begin)
        if slot.logprobs is not None:
            # Only a request that asked for logprobs pays for the sampler-by-sampler path.
            first = 1 if has_penalties(req.params) else 0
            return self._cands().sample_scored(sampler, first, slot.grammar, m.ctx, idx)
        if slot.grammar is not None:
            return self._cands().sample(sampler, slot.grammar, m.ctx, idx), None
        if self.fast and plain_greedy(req.params):
            return argmax_logits(m.ctx, idx, m.n_vocab), None
        return llama_cpp.llama_sampler_sample(sampler, m.ctx, idx), None
