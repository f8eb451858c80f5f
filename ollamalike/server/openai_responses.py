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
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Literal, TypedDict

import numpy as np

from ollamalike.errors import BadRequest, ModelNotFound, OllamalikeError
from ollamalike.names import ModelName
from ollamalike.server.chunk_fields import (
    Chunk,
    calls_of,
    count_of,
    done_reason_of,
    function_of,
    message_of,
    text_of,
)
from ollamalike.server.openai_fields import tool_arguments_json
from ollamalike.server.openai_logprobs import (
    ChoiceLogprobs,
    CompletionLogprobs,
    chat_logprobs,
    completion_logprobs,
    entries_of,
    text_length,
)

SYSTEM_FINGERPRINT = "fp_ollamalike"
FinishReason = Literal["stop", "length", "tool_calls"]


class PromptTokensDetails(TypedDict):
    cached_tokens: int


class CompletionUsage(TypedDict):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails


class ToolCallFunction(TypedDict):
    name: str
    arguments: str  # JSON text


class ToolCall(TypedDict):
    index: int
    id: str
    type: Literal["function"]
    function: ToolCallFunction


class _MessageHead(TypedDict):
    role: Literal["assistant"]
    content: str | None


class ChatMessage(_MessageHead, total=False):
    tool_calls: list[ToolCall]
    reasoning: str


class ChatChoice(TypedDict):
    index: int
    message: ChatMessage
    logprobs: ChoiceLogprobs | None
    finish_reason: FinishReason


class ChatCompletion(TypedDict):
    """``chat.completion`` (the SDK's ``openai.types.chat.ChatCompletion``)."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    system_fingerprint: str
    choices: list[ChatChoice]
    usage: CompletionUsage


class Delta(TypedDict, total=False):
    role: Literal["assistant"]
    content: str
    reasoning: str
    tool_calls: list[ToolCall]


class StreamChoice(TypedDict):
    index: int
    delta: Delta
    logprobs: ChoiceLogprobs | None
    finish_reason: FinishReason | None


class CompletionChoice(TypedDict):
    text: str
    index: int
    logprobs: CompletionLogprobs | None
    finish_reason: FinishReason | None


class Completion(TypedDict):
    """``text_completion`` (the SDK's ``openai.types.Completion``)."""

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    system_fingerprint: str
    choices: list[CompletionChoice]
    usage: CompletionUsage


class Embedding(TypedDict):
    object: Literal["embedding"]
    embedding: str | list[float]  # base64 of little-endian float32, or the floats
    index: int


class EmbeddingUsage(TypedDict):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(TypedDict):
    object: Literal["list"]
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


class ModelObject(TypedDict):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


def error_object(status: int, message: str, exc: OllamalikeError | None = None) -> dict[str, object]:
    """OpenAI's error object, for errors raised after an SSE stream has started (a plain dict: it is
    one of the stream's events)."""
    kind = exc.openai_type if exc is not None else ("server_error" if status >= 500 else "invalid_request_error")
    code = "model_not_found" if isinstance(exc, ModelNotFound) else None
    param = exc.param if exc is not None else None
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def finish_reason(done_reason: str | None, has_tool_calls: bool) -> FinishReason:
    if has_tool_calls:
        return "tool_calls"
    # Ollama's other done reasons ("load", "unload") mean the answer ended normally.
    return "length" if done_reason == "length" else "stop"


def usage(final: Chunk) -> CompletionUsage:
    """OpenAI's usage: the whole prompt, and the part of it the prefix cache served
    (``cached_tokens``, carried by the inference service's final chunk)."""
    prompt = count_of(final, "prompt_eval_count")
    completion = count_of(final, "eval_count")
    cached = int(getattr(final, "cached_tokens", 0) or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached}}


def openai_tool_calls(calls: list[dict[str, object]], start: int = 0) -> list[ToolCall]:
    """Ollama tool calls (arguments as an object) as OpenAI's (arguments as a JSON string, ids "call_…")."""
    out: list[ToolCall] = []
    for offset, call in enumerate(calls):
        name, arguments = function_of(call)
        call_id = call.get("id")
        if not isinstance(call_id, str) or not call_id:
            call_id = f"call_{secrets.token_hex(12)}"
        out.append({
            "index": start + offset,
            "id": call_id,
            "type": "function",
            "function": {"name": name, "arguments": tool_arguments_json(arguments)},
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

    def _chunk(self, choices: list[StreamChoice], usage: CompletionUsage | None = None) -> dict[str, object]:
        """A ``chat.completion.chunk`` (a plain dict: it is one of the stream's events)."""
        chunk: dict[str, object] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": choices,
        }
        if usage is not None:
            chunk["usage"] = usage
        return chunk

    def _delta(self, message: Chunk) -> Delta:
        delta: Delta = {}
        if not self.role_sent:
            delta["role"] = "assistant"
            self.role_sent = True
        content = text_of(message, "content")
        if content or "role" in delta:
            delta["content"] = content
        if thinking := text_of(message, "thinking"):
            delta["reasoning"] = thinking
        calls = calls_of(message)
        if calls:
            delta["tool_calls"] = openai_tool_calls(calls, start=self.tool_calls_sent)
            self.tool_calls_sent += len(calls)
        return delta

    def feed(self, chunk: Chunk) -> list[dict[str, object]]:
        """The OpenAI chunks (zero or more) that carry this Ollama chunk."""
        delta = self._delta(message_of(chunk))
        logprobs = chat_logprobs(entries_of(chunk))
        if not chunk.get("done"):
            if not delta and logprobs is None:
                return []
            return [self._chunk([{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": None}])]
        out = []
        reason = finish_reason(done_reason_of(chunk), self.tool_calls_sent > 0)
        out.append(self._chunk([{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": reason}]))
        if self.include_usage:
            out.append(self._chunk([], usage=usage(chunk)))
        return out


def chat_completion(model: str, chunks: Sequence[Chunk]) -> ChatCompletion:
    """The non-streamed ``chat.completion`` from every chunk of one request."""
    content: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, object]] = []
    final: Chunk = {}
    entries = [e for chunk in chunks for e in entries_of(chunk)]
    for chunk in chunks:
        message = message_of(chunk)
        content.append(text_of(message, "content"))
        thinking.append(text_of(message, "thinking"))
        calls.extend(calls_of(message))
        if chunk.get("done"):
            final = chunk
    text = "".join(content)
    out_message: ChatMessage = {"role": "assistant", "content": text}
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
            "logprobs": chat_logprobs(entries),
            "finish_reason": finish_reason(done_reason_of(final), bool(calls)),
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
        self.offset = 0  # where the next token starts in the text sent so far (legacy text_offset)

    def _logprobs(self, chunk: Chunk) -> CompletionLogprobs | None:
        entries = entries_of(chunk)
        out = completion_logprobs(entries, self.offset)
        self.offset += text_length(entries)
        return out

    def _chunk(self, choices: list[CompletionChoice], usage: CompletionUsage | None = None) -> dict[str, object]:
        """A streamed ``text_completion`` (a plain dict: it is one of the stream's events)."""
        chunk: dict[str, object] = {
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": choices,
        }
        if usage is not None:
            chunk["usage"] = usage
        return chunk

    def feed(self, chunk: Chunk) -> list[dict[str, object]]:
        text = text_of(chunk, "response")
        logprobs = self._logprobs(chunk)
        if not chunk.get("done"):
            if not text and logprobs is None:
                return []
            return [self._chunk([{"text": text, "index": 0, "logprobs": logprobs, "finish_reason": None}])]
        reason = finish_reason(done_reason_of(chunk), False)
        out = [self._chunk([{"text": text, "index": 0, "logprobs": logprobs, "finish_reason": reason}])]
        if self.include_usage:
            out.append(self._chunk([], usage=usage(chunk)))
        return out


def completion(model: str, chunks: Sequence[Chunk]) -> Completion:
    final: Chunk = next((c for c in chunks if c.get("done")), {})
    return {
        "id": new_id("cmpl"),
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": [{
            "text": "".join(text_of(c, "response") for c in chunks),
            "index": 0,
            "logprobs": completion_logprobs([e for c in chunks for e in entries_of(c)]),
            "finish_reason": finish_reason(done_reason_of(final), False),
        }],
        "usage": usage(final),
    }


def embedding_base64(vector: list[float]) -> str:
    """Little-endian float32, base64: what the openai client decodes for encoding_format=base64."""
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


def embedding_list(model: str, result: Chunk, encoding_format: str) -> EmbeddingList:
    """An embed result (``inference.embed``) as OpenAI's embedding list."""
    embeddings = result.get("embeddings")
    vectors = [v for v in embeddings if isinstance(v, list)] if isinstance(embeddings, list) else []
    data: list[Embedding] = [
        {
            "object": "embedding",
            "embedding": embedding_base64(v) if encoding_format == "base64" else list(v),
            "index": i,
        }
        for i, v in enumerate(vectors)
    ]
    tokens = count_of(result, "prompt_eval_count")
    return {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def unix_seconds(value: object) -> int:
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


def model_object(entry: Chunk) -> ModelObject:
    """An ``/api/tags`` entry as OpenAI's model object."""
    name = str(entry.get("name") or entry.get("model") or "")
    return {
        "id": name,
        "object": "model",
        "created": unix_seconds(entry.get("modified_at")),
        "owned_by": owner(name),
    }
