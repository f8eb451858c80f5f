"""Grammar-constrained sampling without paying for the grammar on every token of the vocabulary.

As llama.cpp's own common sampler does: sample with the ordinary chain first, then ask the grammar
whether that one token is allowed. Only when it is not (rare once the model follows the format)
is the grammar applied to the whole vocabulary and the chain run again on what remains.

``Candidates.sample_scored`` is the same sampling, sampler by sampler, for a request that asked for
logprobs: it hands back a copy of the logits as they stand after the chain's penalties sampler
(before top-k/top-p/min-p/temperature and the grammar), which are what the logprobs are taken from.
"""

from __future__ import annotations

import ctypes
import math
from typing import Any

import llama_cpp
import numpy as np
import numpy.typing as npt

from ollamalike.errors import BadRequest

_TOKEN_DATA = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])


def build_grammar(vocab: llama_cpp.llama_vocab_p, grammar: str) -> llama_cpp.llama_sampler_p:
    g: llama_cpp.llama_sampler_p = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
    if not g:
        raise BadRequest("the format could not be compiled into a grammar")
    return g


class Candidates:
    """One reusable candidate array of the vocabulary's size (per engine, used from its thread only)."""

    def __init__(self, n_vocab: int) -> None:
        self.n_vocab = n_vocab
        self._data = (llama_cpp.llama_token_data * n_vocab)()
        self._view = np.frombuffer(memoryview(self._data).cast("B"), dtype=_TOKEN_DATA)
        self._ids = np.arange(n_vocab, dtype=np.int32)
        self.array = llama_cpp.llama_token_data_array(
            data=ctypes.cast(self._data, llama_cpp.llama_token_data_p), size=n_vocab, selected=-1, sorted=False
        )
        self._one = (llama_cpp.llama_token_data * 1)()
        self._one_array = llama_cpp.llama_token_data_array(
            data=ctypes.cast(self._one, llama_cpp.llama_token_data_p), size=1, selected=-1, sorted=False
        )

    def _fill(self, ctx: llama_cpp.llama_context_p, idx: int) -> None:
        logits = llama_cpp.llama_get_logits_ith(ctx, idx)
        self._view["id"] = self._ids
        self._view["logit"] = np.ctypeslib.as_array(logits, shape=(self.n_vocab,))
        self._view["p"] = 0.0
        self.array.size = self.n_vocab
        self.array.selected = -1
        self.array.sorted = False

    def _selected(self) -> int:
        if self.array.selected < 0:
            raise RuntimeError("the sampler selected no token")
        return int(self._data[self.array.selected].id)

    def allowed(self, grammar: llama_cpp.llama_sampler_p, token: int) -> bool:
        # ctypes fields take plain numbers at run time; llama-cpp-python's stubs type them c_int32/c_float.
        one: Any = self._one[0]
        one.id, one.logit, one.p = token, 1.0, 0.0
        self._one_array.size, self._one_array.selected, self._one_array.sorted = 1, -1, False
        llama_cpp.llama_sampler_apply(grammar, ctypes.byref(self._one_array))
        return not math.isinf(one.logit)

    def sample(self, chain: llama_cpp.llama_sampler_p, grammar: llama_cpp.llama_sampler_p,
               ctx: llama_cpp.llama_context_p, idx: int) -> int:
        """A token the grammar allows, sampled by ``chain``; both samplers accept it."""
        self._fill(ctx, idx)
        llama_cpp.llama_sampler_apply(chain, ctypes.byref(self.array))
        token = self._selected()
        if not self.allowed(grammar, token):
            self._fill(ctx, idx)
            llama_cpp.llama_sampler_apply(grammar, ctypes.byref(self.array))
            llama_cpp.llama_sampler_apply(chain, ctypes.byref(self.array))
            token = self._selected()
        llama_cpp.llama_sampler_accept(grammar, token)
        llama_cpp.llama_sampler_accept(chain, token)
        return token

    def sample_scored(self, chain: Any, n_first: int, grammar: Any, ctx: Any, idx: int
                      ) -> tuple[int, npt.NDArray[np.float32]]:
        """Sample as ``llama_sampler_sample`` (or ``sample`` with a grammar) does, applying the chain's
        samplers one by one; returns the token and the logits after its first ``n_first`` samplers
        (the penalties), in token-id order."""
        self._fill(ctx, idx)
        samplers = [llama_cpp.llama_sampler_chain_get(chain, i) for i in range(llama_cpp.llama_sampler_chain_n(chain))]
        for s in samplers[:n_first]:
            llama_cpp.llama_sampler_apply(s, ctypes.byref(self.array))
        # The penalties change logits in place and never reorder: position i is still token i.
        scored = np.array(self._view["logit"], dtype=np.float32)
        for s in samplers[n_first:]:
            llama_cpp.llama_sampler_apply(s, ctypes.byref(self.array))
        token = self._selected()
        if grammar is not None and not self.allowed(grammar, token):
            self._fill(ctx, idx)
            llama_cpp.llama_sampler_apply(grammar, ctypes.byref(self.array))
            llama_cpp.llama_sampler_apply(chain, ctypes.byref(self.array))
            token = self._selected()
        if grammar is not None:
            llama_cpp.llama_sampler_accept(grammar, token)
        llama_cpp.llama_sampler_accept(chain, token)
        return token, scored
