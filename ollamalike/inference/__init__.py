"""Generate / chat / embed as service functions: the one inference path.

The native routes and the OpenAI and Anthropic translations all build a request dataclass (``requests``) and
call ``generate``, ``chat`` or ``embed`` (``service``). Nothing here knows about HTTP.
"""

from __future__ import annotations

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
from ollamalike.inference.service import chat, collect, embed, generate, resolve
from ollamalike.inference.tokens import count_chat_tokens

__all__ = [
    "chat",
    "collect",
    "count_chat_tokens",
    "embed",
    "generate",
    "resolve",
    "ChatRequest",
    "EmbedRequest",
    "GenerateRequest",
    "parse_chat_request",
    "parse_embed_request",
    "parse_embeddings_request",
    "parse_generate_request",
    "parse_keep_alive",
    "parse_message",
]
