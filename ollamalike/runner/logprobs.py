"""Log probabilities of generated tokens, and when each one is handed out with the text.

``score`` turns one position's logits (the sampler's, after the repetition/frequency/presence
penalties and before any truncation sampler: top-k, typical, top-p, min-p, temperature) into
Ollama's entry for the chosen token: ``{"token", "logprob", "bytes", "top_logprobs"}`` (a full
log-softmax over the vocabulary, so it is only computed for requests that ask for it).

``LogprobQueue`` keeps the entries of tokens whose text the ``TextStream`` still holds (an
incomplete UTF-8 character, a possible stop sequence) and releases each one with the first text
chunk that carries some of its text, as Ollama's runner does. A token whose text falls entirely
inside a matched stop sequence never gets an entry out, and neither do end-of-generation tokens.
No llama_cpp here: the engine passes numpy logits and a token-to-bytes function.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypedDict

import numpy as np
import numpy.typing as npt

MAX_TOP_LOGPROBS = 20  # Ollama's (and OpenAI's) limit on alternatives per position
_NEAR = 10.0  # nats below the most likely token: the candidates the top alternatives are ranked from


class _TokenHead(TypedDict):
    token: str
    logprob: float


class TokenLogprob(_TokenHead, total=False):
    """One alternative: Ollama's ``api.TokenLogprob`` (``bytes`` left out when empty, as Ollama's omitempty)."""

    bytes: list[int]


class Logprob(_TokenHead, total=False):
    """The chosen token at one position: Ollama's ``api.Logprob`` (``top_logprobs`` only when asked for)."""

    bytes: list[int]
    top_logprobs: list[TokenLogprob]


def _entry(piece: bytes, logprob: float) -> TokenLogprob:
    out: TokenLogprob = {"token": piece.decode("utf-8", errors="replace"), "logprob": logprob}
    if piece:
        out["bytes"] = list(piece)
    return out


def score(logits: npt.NDArray[np.float32], token: int, top: int, piece: Callable[[int], bytes]) -> Logprob:
    """The chosen ``token``'s log probability under ``logits`` and, with ``top`` > 0, the ``top``
    most likely tokens (ties by lower id, as the greedy sampler picks)."""
    # float32 over the vocabulary (the logits' own precision), the sum in float64: ~1 ms for 262k tokens.
    peak = float(logits.max())
    log_total = peak + float(np.log(np.exp(logits - np.float32(peak)).sum(dtype=np.float64)))
    chosen = piece(token)
    out: Logprob = {"token": chosen.decode("utf-8", errors="replace"),
                    "logprob": min(0.0, float(logits[token]) - log_total)}
    if chosen:
        out["bytes"] = list(chosen)
    if top > 0:
        n = min(top, logits.size)
        # Ranking only the tokens near the peak is what makes this cheap on a real model's logits
        # (a few hundred of them, not the vocabulary); too few there and the whole vocabulary is ranked.
        best = np.flatnonzero(logits >= np.float32(peak - _NEAR))
        if best.size < n:
            best = np.arange(logits.size)
        if best.size > n:
            # The n-th largest value; of the tokens tied at it, the lower ids (``best`` is in id order).
            values = logits[best]
            kth = np.partition(values, best.size - n)[best.size - n]
            above = best[values > kth]
            best = np.concatenate([above, best[values == kth][: n - above.size]])
        ranked = sorted((int(i) for i in best), key=lambda i: (-float(logits[i]), i))
        out["top_logprobs"] = [_entry(piece(i), min(0.0, float(logits[i]) - log_total)) for i in ranked]
    return out


class LogprobQueue:
    """Entries waiting for their token's text to be handed out (positions are decoded characters)."""

    def __init__(self, top: int) -> None:
        self.top = top
        self._pending: list[tuple[int, Logprob]] = []  # (characters decoded before the token, entry)

    def add(self, start: int, entry: Logprob) -> None:
        self._pending.append((start, entry))

    def release(self, emitted: int) -> list[Logprob]:
        """The entries of tokens some of whose text is among the first ``emitted`` characters."""
        n = 0
        while n < len(self._pending) and self._pending[n][0] < emitted:
            n += 1
        out = [e for _, e in self._pending[:n]]
        del self._pending[:n]
        return out

    def rest(self) -> list[Logprob]:
        """At the end of a generation that did not stop on a stop sequence: everything left."""
        out = [e for _, e in self._pending]
        self._pending.clear()
        return out

    def drop(self) -> None:
        """A stop sequence ended the text: what is left was part of it."""
        self._pending.clear()
