"""Per-request sampling: llama.cpp sampler chains, grammars for structured output, and the text stream.

``SamplingParams.from_options`` decodes the options the daemon sends (already validated there, into
``ollamalike.options.Options``) with Ollama's defaults: it trusts its parent and checks only the
structure the llama.cpp calls need (numbers that convert, a mirostat mode the chain knows);
``build_sampler`` turns them into one ``llama_sampler`` chain (grammars live in ``constrained``);
``grammar_for_format`` converts ``format`` ("json" or a JSON schema) into GBNF; ``TextStream``
turns generated token bytes into text chunks that are always whole UTF-8 characters and never
contain (or begin to contain) a stop sequence.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import llama_cpp
from llama_cpp.llama_grammar import JSON_GBNF

from ollamalike.errors import BadRequest
from ollamalike.jsontypes import JSONObject, JSONValue
from ollamalike.options import PARAMETERS
from ollamalike.runner.schema import schema_to_gbnf


@dataclass(frozen=True)
class SamplingParams:
    """Ollama's per-request options; the defaults are the option table's (``ollamalike.options``)."""

    temperature: float = PARAMETERS["temperature"].default
    top_k: int = PARAMETERS["top_k"].default
    top_p: float = PARAMETERS["top_p"].default
    min_p: float = PARAMETERS["min_p"].default
    typical_p: float = PARAMETERS["typical_p"].default
    repeat_penalty: float = PARAMETERS["repeat_penalty"].default
    repeat_last_n: int = PARAMETERS["repeat_last_n"].default
    presence_penalty: float = PARAMETERS["presence_penalty"].default
    frequency_penalty: float = PARAMETERS["frequency_penalty"].default
    mirostat: int = PARAMETERS["mirostat"].default
    mirostat_tau: float = PARAMETERS["mirostat_tau"].default
    mirostat_eta: float = PARAMETERS["mirostat_eta"].default
    seed: int = PARAMETERS["seed"].default
    num_predict: int = PARAMETERS["num_predict"].default
    num_keep: int = PARAMETERS["num_keep"].default
    stop: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def from_options(cls, options: JSONObject | None) -> SamplingParams:
        opts = options or {}
        # Each value is converted to its field's type below; the dict feeds the constructor.
        kwargs: dict[str, Any] = {}
        for name, spec in cls.__dataclass_fields__.items():
            if name not in opts or opts[name] is None:
                continue
            value = opts[name]
            try:
                if name == "stop":
                    if not isinstance(value, (str, list, dict)):
                        raise TypeError(name)
                    items = [value] if isinstance(value, str) else list(value)
                    kwargs[name] = tuple(str(s) for s in items if str(s))
                elif not isinstance(value, (int, float, str)):
                    raise TypeError(name)
                elif isinstance(spec.default, int):
                    kwargs[name] = int(value)
                else:
                    kwargs[name] = float(value)
            except (TypeError, ValueError):
                raise BadRequest(f"option {name!r} has an invalid value: {value!r}") from None
        params = cls(**kwargs)
        if params.mirostat not in (0, 1, 2):
            raise BadRequest("option 'mirostat' must be 0, 1 or 2")
        return params


def grammar_for_format(fmt: JSONValue) -> str | None:
    """GBNF for Ollama's ``format`` as the request body has it: None, "json" or a JSON schema object
    (anything else is a ``BadRequest``)."""
    if fmt is None or fmt == "":
        return None
    if fmt == "json":
        return JSON_GBNF
    if isinstance(fmt, dict):
        return schema_to_gbnf(fmt)
    raise BadRequest(f'invalid format: {fmt!r}; expected "json" or a JSON schema object')


def _seed(seed: int) -> int:
    return llama_cpp.LLAMA_DEFAULT_SEED if seed < 0 else seed & 0xFFFFFFFF


def has_penalties(params: SamplingParams) -> bool:
    """Whether the chain starts with the penalties sampler (then it is the chain's first sampler)."""
    return params.repeat_penalty != 1.0 or bool(params.presence_penalty) or bool(params.frequency_penalty)


def build_sampler(params: SamplingParams, vocab: llama_cpp.llama_vocab_p, n_vocab: int,
                  history: Sequence[int]) -> llama_cpp.llama_sampler_p:
    """A sampler chain for one request. ``history`` (prompt tokens) primes the repetition penalties.

    Order follows Ollama/llama.cpp: penalties, then either greedy, mirostat, or
    top_k → typical → top_p → min_p → temperature → dist. A grammar is kept outside the chain
    (see ``constrained``) so it is only consulted for the token the chain picked.
    """
    del vocab  # the chain's samplers need no vocabulary; kept for a uniform call site
    chain_params = llama_cpp.llama_sampler_chain_default_params()
    chain_params.no_perf = True
    chain: llama_cpp.llama_sampler_p = llama_cpp.llama_sampler_chain_init(chain_params)
    add = llama_cpp.llama_sampler_chain_add
    if has_penalties(params):
        last_n = n_vocab if params.repeat_last_n == -1 else max(params.repeat_last_n, 0)
        pen = llama_cpp.llama_sampler_init_penalties(
            n_vocab, last_n, params.repeat_penalty, params.frequency_penalty, params.presence_penalty
        )
        for tok in history[-last_n:] if last_n else ():
            llama_cpp.llama_sampler_accept(pen, tok)
        add(chain, pen)
    seed = _seed(params.seed)
    if params.temperature <= 0.0:
        add(chain, llama_cpp.llama_sampler_init_greedy())
    elif params.mirostat == 1:
        add(chain, llama_cpp.llama_sampler_init_temp(params.temperature))
        add(chain, llama_cpp.llama_sampler_init_mirostat(n_vocab, seed, params.mirostat_tau, params.mirostat_eta, 100))
    elif params.mirostat == 2:
        add(chain, llama_cpp.llama_sampler_init_temp(params.temperature))
        add(chain, llama_cpp.llama_sampler_init_mirostat_v2(seed, params.mirostat_tau, params.mirostat_eta))
    else:
        if params.top_k > 0:
            add(chain, llama_cpp.llama_sampler_init_top_k(params.top_k))
        if 0.0 < params.typical_p < 1.0:
            add(chain, llama_cpp.llama_sampler_init_typical(params.typical_p, 1))
        if 0.0 < params.top_p < 1.0:
            add(chain, llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
        if params.min_p > 0.0:
            add(chain, llama_cpp.llama_sampler_init_min_p(params.min_p, 1))
        add(chain, llama_cpp.llama_sampler_init_temp(params.temperature))
        add(chain, llama_cpp.llama_sampler_init_dist(seed))
    return chain


class TextStream:
    """Bytes of generated tokens in, safe text chunks out.

    Incomplete UTF-8 sequences are held until the character is whole, and any tail that could be the
    beginning of a stop sequence is held until it either completes the stop (then the text ends
    before it) or diverges (then it is released).
    """

    def __init__(self, stop: Sequence[str]) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stop = [s for s in stop if s]
        self._pending = ""
        self.stopped = False
        self.matched: str | None = None  # the stop sequence that ended the text, if one did
        # Characters decoded from the pushed bytes, and how many of them went out (the logprob
        # queue hands a token's entry out with the first chunk carrying its text).
        self.decoded = 0
        self.emitted = 0

    def push(self, piece: bytes) -> str:
        """Feed one token's bytes; returns the text that is now safe to emit ("" if none)."""
        if self.stopped:
            return ""
        new = self._decoder.decode(piece, final=False)
        self.decoded += len(new)
        self._pending += new
        out = self._take()
        self.emitted += len(out)
        return out

    def _take(self) -> str:
        if not self._stop:
            out, self._pending = self._pending, ""
            return out
        found = [(i, s) for s in self._stop if (i := self._pending.find(s)) >= 0]
        cut = min(found)[0] if found else -1
        if cut >= 0:
            self.stopped = True
            self.matched = min(found)[1]
            out, self._pending = self._pending[:cut], ""
            return out
        hold = self._held_tail()
        out = self._pending[: len(self._pending) - hold]
        self._pending = self._pending[len(self._pending) - hold :]
        return out

    def _held_tail(self) -> int:
        """Length of the longest suffix of the pending text that is a proper prefix of a stop string."""
        best = 0
        text = self._pending
        for s in self._stop:
            for n in range(min(len(s) - 1, len(text)), best, -1):
                if text.endswith(s[:n]):
                    best = n
                    break
        return best

    def flush(self) -> str:
        """At the end of generation: release held text (an incomplete character becomes U+FFFD)."""
        if self.stopped:
            return ""
        tail = self._decoder.decode(b"", final=True)
        self.decoded += len(tail)
        out = self._pending + tail
        self._pending = ""
        self.emitted += len(out)
        return out
