"""The native chunks' ``logprobs`` entries in OpenAI's shapes (translation only).

The inference chunks carry Ollama's entries (``{"token", "logprob", "bytes"?, "top_logprobs"?}``,
computed by the runner). ``/v1/chat/completions`` answers them as ``choices[].logprobs =
{"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}], "refusal": null}`` (the
``openai`` SDK's ``ChatCompletionTokenLogprob``: ``top_logprobs`` always a list, ``bytes`` null
when the token has none). ``/v1/completions`` answers the legacy shape the SDK's
``CompletionChoice.logprobs`` reads (``tokens``, ``token_logprobs``, ``top_logprobs`` as
``{token: logprob}`` maps, ``text_offset`` into the returned text) plus ``content``, the entries as
Ollama's own ``/v1/completions`` emits them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypedDict

from ollamalike.server.chunk_fields import Chunk


class TopLogprob(TypedDict):
    token: str
    logprob: float
    bytes: list[int] | None


class TokenLogprob(TypedDict):
    token: str
    logprob: float
    bytes: list[int] | None
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(TypedDict):
    """``choices[].logprobs`` of a chat completion (chunk)."""

    content: list[TokenLogprob]
    refusal: None


class CompletionLogprobs(TypedDict):
    """``choices[].logprobs`` of a text completion: the legacy fields, and Ollama's ``content``."""

    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]]
    text_offset: list[int]
    content: list[TokenLogprob]


def _top(entry: Mapping[str, object]) -> TopLogprob:
    token = entry.get("token")
    logprob = entry.get("logprob")
    raw = entry.get("bytes")
    return {
        "token": token if isinstance(token, str) else "",
        "logprob": float(logprob) if isinstance(logprob, (int, float)) else 0.0,
        "bytes": [b for b in raw if isinstance(b, int)] if isinstance(raw, list) and raw else None,
    }


def _token(entry: Mapping[str, object]) -> TokenLogprob:
    head = _top(entry)
    alternatives = entry.get("top_logprobs")
    tops = [_top(t) for t in alternatives if isinstance(t, Mapping)] if isinstance(alternatives, list) else []
    return {"token": head["token"], "logprob": head["logprob"], "bytes": head["bytes"], "top_logprobs": tops}


def entries_of(chunk: Chunk) -> list[TokenLogprob]:
    """A native chunk's logprob entries, in OpenAI's chat shape ([] when it carries none)."""
    raw = chunk.get("logprobs")
    return [_token(e) for e in raw if isinstance(e, Mapping)] if isinstance(raw, list) else []


def chat_logprobs(entries: Sequence[TokenLogprob]) -> ChoiceLogprobs | None:
    return {"content": list(entries), "refusal": None} if entries else None


def _legacy_top(entry: TokenLogprob) -> dict[str, float]:
    """``{token: logprob}``, most likely first; two tokens with the same text keep the likelier one."""
    out: dict[str, float] = {}
    for t in entry["top_logprobs"]:
        out.setdefault(t["token"], t["logprob"])
    return out


def completion_logprobs(entries: Sequence[TokenLogprob], offset: int = 0) -> CompletionLogprobs | None:
    """The legacy shape; ``offset`` is where the first token starts in the text returned so far."""
    if not entries:
        return None
    offsets: list[int] = []
    for e in entries:
        offsets.append(offset)
        offset += len(e["token"])
    return {
        "tokens": [e["token"] for e in entries],
        "token_logprobs": [e["logprob"] for e in entries],
        "top_logprobs": [_legacy_top(e) for e in entries],
        "text_offset": offsets,
        "content": list(entries),
    }


def text_length(entries: Sequence[TokenLogprob]) -> int:
    """How far the entries move the text offset."""
    return sum(len(e["token"]) for e in entries)
