"""The response chunks generate and chat stream (Ollama's shapes), and ``collect``, which joins them.

A stream is content chunks (``done: false``: a ``GenerateChunk`` or a ``ChatChunk``) then one
``FinalChunk`` with ``done: true``, the ``done_reason`` and the measured durations in nanoseconds.
``done`` below is the runner's final event as decoded (``runner.like.RunnerLike.completion``).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import AsyncIterator, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Literal, TypedDict

from ollamalike.errors import OllamalikeError, RunnerError
from ollamalike.jsontypes import JSONObject

if TYPE_CHECKING:
    from ollamalike.template.values import ToolCall


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


class _AssistantHead(TypedDict):
    role: Literal["assistant"]
    content: str


class AssistantMessage(_AssistantHead, total=False):
    """A chat chunk's ``message``: the text so far, thinking and tool calls when there are any."""

    thinking: str
    tool_calls: list[ToolCall]


class _GenerateHead(TypedDict):
    model: str
    created_at: str
    response: str


class GenerateChunk(_GenerateHead, total=False):
    """A generate stream's content chunk (``done`` is False; ``thinking`` only when there is some)."""

    thinking: str
    done: bool
    logprobs: list[object]  # the runner's entries, in Ollama's api.Logprob shape, when asked for


class _ChatHead(TypedDict):
    model: str
    created_at: str
    message: AssistantMessage
    done: bool


class ChatChunk(_ChatHead, total=False):
    """A chat stream's content chunk."""

    logprobs: list[object]


class FinalChunk(dict[str, object]):
    """The last chunk of a generate/chat stream: Ollama's fields in Ollama's order (``context`` for
    generate; the measured counts and durations). ``cached_tokens`` (how many prompt tokens the
    prefix cache served) is no field of Ollama's response; translations read it (OpenAI's
    ``usage.prompt_tokens_details.cached_tokens``)."""

    cached_tokens: int = 0
    stop_sequence: str | None = None  # the stop sequence that ended the text (Anthropic's stop_sequence)


# What generate and chat stream.
Chunk = GenerateChunk | ChatChunk | FinalChunk


class EmbedResponse(TypedDict):
    """``/api/embed``'s answer."""

    model: str
    embeddings: list[list[float]]
    total_duration: int
    load_duration: int
    prompt_eval_count: int


def _count(done: JSONObject, name: str) -> int:
    value = done.get(name)
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def generated_tokens(done: JSONObject) -> list[int]:
    """The token ids the runner generated, from its final event."""
    tokens = done.get("tokens")
    return [t for t in tokens if isinstance(t, int)] if isinstance(tokens, list) else []


def final_chunk(model: str, head: Mapping[str, object], done: JSONObject, started_ns: int,
                load_ns: int) -> FinalChunk:
    """The last chunk: ``head`` (the empty response or message) then the runner's stats and durations.

    ``prompt_eval_count`` is the whole prompt, cached or not (as Ollama); ``prompt_eval_duration``
    the time measured evaluating what was not cached.
    """
    if not done:
        raise RunnerError("the model runner stopped before finishing the response")
    reason = done.get("done_reason")
    final = FinalChunk({
        "model": model,
        "created_at": now_rfc3339(),
        **head,
        "done": True,
        "done_reason": reason if isinstance(reason, str) and reason else "stop",
        "total_duration": time.perf_counter_ns() - started_ns,
        "load_duration": load_ns,
        "prompt_eval_count": _count(done, "prompt_eval_count"),
        "prompt_eval_duration": _count(done, "prompt_eval_duration"),
        "eval_count": _count(done, "eval_count"),
        "eval_duration": _count(done, "eval_duration"),
    })
    final.cached_tokens = _count(done, "cached_tokens")
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


def gen_chunk(model: str, content: str, thinking: str, logprobs: list[object] | None = None) -> GenerateChunk:
    chunk: GenerateChunk = {"model": model, "created_at": now_rfc3339(), "response": content}
    if thinking:
        chunk["thinking"] = thinking
    chunk["done"] = False
    if logprobs:
        chunk["logprobs"] = logprobs  # the runner's entries, in Ollama's api.Logprob shape
    return chunk


def chat_chunk(model: str, content: str, thinking: str, tool_calls: list[ToolCall] | None = None,
               logprobs: list[object] | None = None) -> ChatChunk:
    message: AssistantMessage = {"role": "assistant", "content": content}
    if thinking:
        message["thinking"] = thinking
    if tool_calls:
        message["tool_calls"] = tool_calls
    chunk: ChatChunk = {"model": model, "created_at": now_rfc3339(), "message": message, "done": False}
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


def _text(fields: Mapping[str, object], name: str) -> str:
    value = fields.get(name)
    return value if isinstance(value, str) else ""


async def collect(chunks: AsyncIterator[Chunk]) -> dict[str, object]:
    """Join a generate/chat stream into the one object a ``stream: false`` request answers with."""
    parts: list[str] = []
    thinking: list[str] = []
    calls: list[object] = []
    logprobs: list[object] = []
    last: Mapping[str, object] = {}
    is_chat = False
    async with contextlib.aclosing(chunks) as stream:  # type: ignore[type-var]
        async for chunk in stream:
            fields: Mapping[str, object] = chunk
            last = fields
            more_logprobs = fields.get("logprobs")
            if isinstance(more_logprobs, list):
                logprobs.extend(more_logprobs)
            msg = fields.get("message")
            if isinstance(msg, Mapping):
                is_chat = True
                parts.append(_text(msg, "content"))
                thinking.append(_text(msg, "thinking"))
                more = msg.get("tool_calls")
                calls.extend(more if isinstance(more, list) else [])
            else:
                parts.append(_text(fields, "response"))
                thinking.append(_text(fields, "thinking"))
    if not last.get("done"):
        raise OllamalikeError("the response ended before it was complete")
    out = dict(last)
    if is_chat:
        message: dict[str, object] = {"role": "assistant", "content": "".join(parts)}
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
