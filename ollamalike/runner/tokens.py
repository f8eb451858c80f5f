"""Text and token ids through the loaded model's vocabulary: tokenize, a token's piece (its bytes),
detokenize, and the engine's per-runner cache of pieces (one ``llama_token_to_piece`` per id).
"""

from __future__ import annotations

import ctypes

import llama_cpp

from ollamalike.runner.llama import Loaded


def tokenize(m: Loaded, text: str, add_special: bool = True, parse_special: bool = True) -> list[int]:
    data = text.encode("utf-8", errors="replace")
    cap = len(data) + 8
    buf = (llama_cpp.llama_token * cap)()
    n = llama_cpp.llama_tokenize(m.vocab, data, len(data), buf, cap, add_special, parse_special)
    if n < 0:
        cap = -n
        buf = (llama_cpp.llama_token * cap)()
        n = llama_cpp.llama_tokenize(m.vocab, data, len(data), buf, cap, add_special, parse_special)
    return list(buf[:n])


def token_piece(m: Loaded, token: int) -> bytes:
    """One token's bytes, special tokens rendered as their text (as Ollama does)."""
    buf = ctypes.create_string_buffer(64)
    n = llama_cpp.llama_token_to_piece(m.vocab, token, buf, len(buf), 0, True)
    if n < 0:
        buf = ctypes.create_string_buffer(-n)
        n = llama_cpp.llama_token_to_piece(m.vocab, token, buf, len(buf), 0, True)
    return buf.raw[:n]


def detokenize(m: Loaded, tokens: list[int]) -> str:
    """Concatenated token pieces: the same text a stream of these tokens shows."""
    return b"".join(token_piece(m, t) for t in tokens).decode("utf-8", errors="replace")


class PieceCache:
    """Token pieces as the engine streams them, each computed once (the engine thread only)."""

    def __init__(self, m: Loaded) -> None:
        self._vocab = m.vocab
        self._pieces: dict[int, bytes] = {}
        self._buf = (ctypes.c_char * 256)()

    def __call__(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            buf = self._buf
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, True)
            if n < 0:
                buf = (ctypes.c_char * -n)()
                n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, True)
            piece = buf.raw[:n]
            self._pieces[token] = piece
        return piece
