"""Generate / chat / embed as service functions: the one inference path.

The native routes and the OpenAI translation both build a request dataclass (``requests``) and
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

__all__ = [
    "chat",
    "collect",
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
