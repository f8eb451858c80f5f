"""The response chunks generate and chat stream (Ollama's shapes), and ``collect``, which joins them.

A stream is content chunks (``done: false``) then one ``FinalChunk`` with ``done: true``, the
``done_reason`` and the measured durations in nanoseconds.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

from ollamalike.errors import OllamalikeError, RunnerError


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


class FinalChunk(dict[str, Any]):
    """The last chunk of a generate/chat stream. ``cached_tokens`` (how many prompt tokens the prefix
    cache served) is no field of Ollama's response; translations read it (OpenAI's
    ``usage.prompt_tokens_details.cached_tokens``)."""

    cached_tokens: int = 0
    stop_sequence: str | None = None  # the stop sequence that ended the text (Anthropic's stop_sequence)


def final_chunk(model: str, head: dict[str, Any], done: dict[str, Any], started_ns: int,
                load_ns: int) -> FinalChunk:
    """The last chunk: ``head`` (the empty response or message) then the runner's stats and durations.

    ``prompt_eval_count`` is the whole prompt, cached or not (as Ollama); ``prompt_eval_duration``
    the time measured evaluating what was not cached.
    """
    if not done:
        raise RunnerError("the model runner stopped before finishing the response")
    final = FinalChunk({
        "model": model,
        "created_at": now_rfc3339(),
        **head,
        "done": True,
        "done_reason": done.get("done_reason") or "stop",
        "total_duration": time.perf_counter_ns() - started_ns,
        "load_duration": load_ns,
        "prompt_eval_count": int(done.get("prompt_eval_count") or 0),
        "prompt_eval_duration": int(done.get("prompt_eval_duration") or 0),
        "eval_count": int(done.get("eval_count") or 0),
        "eval_duration": int(done.get("eval_duration") or 0),
    })
    final.cached_tokens = int(done.get("cached_tokens") or 0)
    matched = done.get("stop_sequence")
    final.stop_sequence = matched if isinstance(matched, str) and matched else None
    return final


def with_context(final: FinalChunk, context: list[int]) -> FinalChunk:
    """``final`` with generate's ``context`` right after done_reason, where Ollama puts it."""
    items = list(final.items())
    out = FinalChunk({**dict(items[:5]), "context": context, **dict(items[5:])})
    out.cached_tokens = final.cached_tokens
    out.stop_sequence = final.stop_sequence
    return out


def gen_chunk(model: str, content: str, thinking: str, logprobs: list[object] | None = None) -> dict[str, Any]:
    chunk: dict[str, Any] = {"model": model, "created_at": now_rfc3339(), "response": content}
    if thinking:
        chunk["thinking"] = thinking
    chunk["done"] = False
    if logprobs:
        chunk["logprobs"] = logprobs  # the runner's entries, in Ollama's api.Logprob shape
    return chunk


def chat_chunk(model: str, content: str, thinking: str, tool_calls: list[dict[str, Any]] | None = None,
               logprobs: list[object] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking:
        message["thinking"] = thinking
    if tool_calls:
        message["tool_calls"] = tool_calls
    chunk: dict[str, Any] = {"model": model, "created_at": now_rfc3339(), "message": message, "done": False}
    if logprobs:
        chunk["logprobs"] = logprobs
    return chunk


def shorten(vector: list[float], dims: int | None) -> list[float]:
    """Matryoshka-style truncation: keep the first ``dims`` values and normalize again."""
    if dims is None or dims >= len(vector):
        return vector
    head = vector[:dims]
    norm = math.sqrt(sum(v * v for v in head))
    return [v / norm for v in head] if norm > 0 else head


async def collect(chunks: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    """Join a generate/chat stream into the one object a ``stream: false`` request answers with."""
    parts: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    logprobs: list[object] = []
    last: dict[str, Any] = {}
    is_chat = False
    async with contextlib.aclosing(chunks) as stream:  # type: ignore[type-var]
        async for chunk in stream:
            last = chunk
            logprobs.extend(chunk.get("logprobs") or [])
            if "message" in chunk:
                is_chat = True
                msg = chunk["message"]
                parts.append(msg.get("content") or "")
                thinking.append(msg.get("thinking") or "")
                calls.extend(msg.get("tool_calls") or [])
            else:
                parts.append(chunk.get("response") or "")
                thinking.append(chunk.get("thinking") or "")
    if not last.get("done"):
        raise OllamalikeError("the response ended before it was complete")
    out = dict(last)
    if is_chat:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(parts)}
        if any(thinking):
            message["thinking"] = "".join(thinking)
        if calls:
            message["tool_calls"] = calls
        out["message"] = message
        if logprobs:  # Ollama's ChatResponse: after done_reason, before the metrics
            head = [k for k in out if k in ("model", "created_at", "message", "done", "done_reason")]
            out = {k: out[k] for k in head} | {"logprobs": logprobs} | {k: v for k, v in out.items() if k not in head}
    else:
        out["response"] = "".join(parts)
        if any(thinking):
            out["thinking"] = "".join(thinking)
        # Keep Ollama's field order: model, created_at, response, thinking, done, ...
        out = {k: out[k] for k in ("model", "created_at", "response", "thinking") if k in out} | {
            k: v for k, v in out.items() if k not in ("model", "created_at", "response", "thinking")
        }
        if logprobs:  # Ollama's GenerateResponse has it last
            out["logprobs"] = logprobs
    return out
