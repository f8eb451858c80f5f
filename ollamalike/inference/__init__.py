"""The one inference path: request dataclasses (``requests``) and ``InferenceService`` (``service``).

The native routes and the OpenAI, Anthropic and Responses translations all build a request
dataclass and call ``InferenceService.generate``, ``chat``, ``embed`` or ``count_chat_tokens``.
Nothing here knows about HTTP.
"""

from __future__ import annotations

from ollamalike.inference.chunks import FinalChunk, collect
from ollamalike.inference.requests import (
    ChatRequest,
    EmbedRequest,
    GenerateRequest,
    parse_chat_request,
    parse_embed_request,
    parse_embeddings_request,
    parse_generate_request,
    parse_keep_alive,
    parse_message,
)
from ollamalike.inference.service import InferenceObserver, InferenceRequest, InferenceService, resolve

__all__ = [
    "collect",
    "resolve",
    "ChatRequest",
    "EmbedRequest",
    "FinalChunk",
    "GenerateRequest",
    "InferenceObserver",
    "InferenceRequest",
    "InferenceService",
    "parse_chat_request",
    "parse_embed_request",
    "parse_embeddings_request",
    "parse_generate_request",
    "parse_keep_alive",
    "parse_message",
]
