"""Translation of ``ollamalike.inference`` output (Ollama-shaped chunks) into OpenAI's objects.

Pure functions and small stateful encoders, no I/O: ``ChatStream`` / ``CompletionStream`` turn
the chunk stream of one request into ``chat.completion.chunk`` / ``text_completion`` events;
``chat_completion`` / ``completion`` build the non-streamed answers from the collected chunks;
``embedding_list`` and ``model_object`` shape embeddings and the model catalog.
"""

from __future__ import annotations

import base64
import secrets
import time
from datetime import datetime, timezone
from typing import Any

import numpy as np

from ollamalike.errors import BadRequest, ModelNotFound, OllamalikeError
from ollamalike.names import ModelName
from ollamalike.server.openai_fields import tool_arguments_json

SYSTEM_FINGERPRINT = "fp_ollamalike"


def error_object(status: int, message: str, exc: OllamalikeError | None = None) -> dict[str, Any]:
    """OpenAI's error object, for errors raised after an SSE stream has started."""
    kind = exc.openai_type if exc is not None else ("server_error" if status >= 500 else "invalid_request_error")
    code = "model_not_found" if isinstance(exc, ModelNotFound) else None
    param = exc.param if exc is not None else None
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def finish_reason(done_reason: str | None, has_tool_calls: bool) -> str:
    if has_tool_calls:
        return "tool_calls"
    # Ollama's other done reasons ("load", "unload") mean the answer ended normally.
    return "length" if done_reason == "length" else "stop"


def usage(final: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's usage: the whole prompt, and the part of it the prefix cache served
    (``cached_tokens``, carried by the inference service's final chunk)."""
    prompt = int(final.get("prompt_eval_count") or 0)
    completion = int(final.get("eval_count") or 0)
    cached = int(getattr(final, "cached_tokens", 0) or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached}}


def openai_tool_calls(calls: list[dict[str, Any]], start: int = 0) -> list[dict[str, Any]]:
    """Ollama tool calls (arguments as an object) as OpenAI's (arguments as a JSON string, ids "call_…")."""
    out = []
    for offset, call in enumerate(calls):
        fn = call.get("function") or {}
        call_id = call.get("id")
        if not isinstance(call_id, str) or not call_id:
            call_id = f"call_{secrets.token_hex(12)}"
        out.append({
            "index": start + offset,
            "id": call_id,
            "type": "function",
            "function": {"name": fn.get("name", ""), "arguments": tool_arguments_json(fn.get("arguments"))},
        })
    return out


class ChatStream:
    """Encodes one chat request's Ollama chunks as ``chat.completion.chunk`` objects."""

    def __init__(self, model: str, include_usage: bool) -> None:
        self.id = new_id("chatcmpl")
        self.model = model
        self.created = int(time.time())
        self.include_usage = include_usage
        self.role_sent = False
        self.tool_calls_sent = 0

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": choices,
            **extra,
        }

    def _delta(self, message: dict[str, Any]) -> dict[str, Any]:
        delta: dict[str, Any] = {}
        if not self.role_sent:
            delta["role"] = "assistant"
            self.role_sent = True
        content = message.get("content") or ""
        if content or "role" in delta:
            delta["content"] = content
        if message.get("thinking"):
            delta["reasoning"] = message["thinking"]
        calls = message.get("tool_calls") or []
        if calls:
            delta["tool_calls"] = openai_tool_calls(calls, start=self.tool_calls_sent)
            self.tool_calls_sent += len(calls)
        return delta

    def feed(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        """The OpenAI chunks (zero or more) that carry this Ollama chunk."""
        delta = self._delta(chunk.get("message") or {})
        if not chunk.get("done"):
            if not delta:
                return []
            return [self._chunk([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}])]
        out = []
        reason = finish_reason(chunk.get("done_reason"), self.tool_calls_sent > 0)
        out.append(self._chunk([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}]))
        if self.include_usage:
            out.append(self._chunk([], usage=usage(chunk)))
        return out


def chat_completion(model: str, chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """The non-streamed ``chat.completion`` from every chunk of one request."""
    content: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    final: dict[str, Any] = {}
    for chunk in chunks:
        message = chunk.get("message") or {}
        content.append(message.get("content") or "")
        thinking.append(message.get("thinking") or "")
        calls.extend(message.get("tool_calls") or [])
        if chunk.get("done"):
            final = chunk
    text = "".join(content)
    out_message: dict[str, Any] = {"role": "assistant", "content": text}
    if calls:
        out_message["tool_calls"] = openai_tool_calls(calls)
        if not text:
            out_message["content"] = None
    if any(thinking):
        out_message["reasoning"] = "".join(thinking)
    return {
        "id": new_id("chatcmpl"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": [{
            "index": 0,
            "message": out_message,
            "logprobs": None,
            "finish_reason": finish_reason(final.get("done_reason"), bool(calls)),
        }],
        "usage": usage(final),
    }


class CompletionStream:
    """Encodes one completion request's Ollama generate chunks as ``text_completion`` objects."""

    def __init__(self, model: str, include_usage: bool) -> None:
        self.id = new_id("cmpl")
        self.model = model
        self.created = int(time.time())
        self.include_usage = include_usage

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": choices,
            **extra,
        }

    def feed(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        text = chunk.get("response") or ""
        if not chunk.get("done"):
            if not text:
                return []
            return [self._chunk([{"text": text, "index": 0, "logprobs": None, "finish_reason": None}])]
        reason = finish_reason(chunk.get("done_reason"), False)
        out = [self._chunk([{"text": text, "index": 0, "logprobs": None, "finish_reason": reason}])]
        if self.include_usage:
            out.append(self._chunk([], usage=usage(chunk)))
        return out


def completion(model: str, chunks: list[dict[str, Any]]) -> dict[str, Any]:
    final = next((c for c in chunks if c.get("done")), {})
    return {
        "id": new_id("cmpl"),
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": [{
            "text": "".join(c.get("response") or "" for c in chunks),
            "index": 0,
            "logprobs": None,
            "finish_reason": finish_reason(final.get("done_reason"), False),
        }],
        "usage": usage(final),
    }


def embedding_base64(vector: list[float]) -> str:
    """Little-endian float32, base64: what the openai client decodes for encoding_format=base64."""
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


def embedding_list(model: str, result: dict[str, Any], encoding_format: str) -> dict[str, Any]:
    vectors = result.get("embeddings") or []
    data = [
        {
            "object": "embedding",
            "embedding": embedding_base64(v) if encoding_format == "base64" else list(v),
            "index": i,
        }
        for i, v in enumerate(vectors)
    ]
    tokens = int(result.get("prompt_eval_count") or 0)
    return {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def unix_seconds(value: Any) -> int:
    """Unix seconds from an RFC 3339 time (Go's nanosecond precision allowed), a datetime or a number."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and value:
        text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
        head, dot, rest = text.partition(".")
        if dot:
            # Python < 3.11 parses at most 6 fractional digits: drop the rest.
            digits = len(rest) - len(rest.lstrip("0123456789"))
            text = f"{head}.{rest[:min(digits, 6)]}{rest[digits:]}" if digits else head + rest[digits:]
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return 0
    else:
        return 0
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp())


def owner(name: str) -> str:
    """The namespace the model belongs to ("library" for official names; the user for hf.co)."""
    try:
        return ModelName.parse(name).namespace
    except BadRequest:
        return "library"


def model_object(entry: dict[str, Any]) -> dict[str, Any]:
    """An ``/api/tags`` entry as OpenAI's model object."""
    name = str(entry.get("name") or entry.get("model") or "")
    return {
        "id": name,
        "object": "model",
        "created": unix_seconds(entry.get("modified_at")),
        "owned_by": owner(name),
    }
