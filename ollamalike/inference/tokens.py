"""``count_chat_tokens``: how many tokens a chat request's prompt is, by the model's own tokenizer.

The prompt is rendered exactly as ``chat`` renders it (the model's template, its SYSTEM and
MESSAGE history, the tools) and tokenized by the model's runner, so the count is what the model
would be given (before any truncation to num_ctx).
"""

from __future__ import annotations

import asyncio
from typing import Any

from ollamalike.errors import BadRequest
from ollamalike.inference.requests import ChatRequest
from ollamalike.inference.service import check_think, resolve, runner_options


async def count_chat_tokens(state: Any, req: ChatRequest) -> int:
    from ollamalike.template import render_chat

    model = await resolve(state, req.model)
    caps = list(getattr(model, "capabilities", None) or [])
    check_think(req.model, model, req.think)
    if req.tools and "tools" not in caps:
        raise BadRequest(f'"{req.model}" does not support tools')
    if any(m.get("images") for m in req.messages) and "vision" not in caps:
        raise BadRequest("this model is missing data required for image input")
    prompt = await asyncio.to_thread(render_chat, model, req.messages, tools=req.tools, think=req.think)
    lease = await state.scheduler.acquire(model, runner_options(model, req.options), req.keep_alive)
    try:
        return len(await lease.runner.tokenize(prompt, add_special=True))
    finally:
        lease.release()
