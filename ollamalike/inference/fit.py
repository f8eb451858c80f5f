"""Fitting a prompt to the context: generate's token truncation (Ollama's num_keep rule) and chat's
dropping of the oldest turns, with the images of the turns that stay tagged and counted.

The daemon owns truncation; the runner refuses a prompt that does not fit and never cuts one. A
prompt with images is never cut through an image: too long is a 400 (``too_many_images``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from ollamalike.errors import BadRequest
from ollamalike.media import Media, tag_messages
from ollamalike.runner.like import RunnerLike

if TYPE_CHECKING:
    from ollamalike.inference.requests import ChatMessage
    from ollamalike.template.render import ModelLike
    from ollamalike.template.values import Tool

log = logging.getLogger("ollamalike.inference")


def prompt_budget(num_ctx: int) -> int:
    """The most prompt tokens a slot of ``num_ctx`` takes: one cell stays free for the first generated token."""
    return max(1, num_ctx - 1)


def check_fits(tokens: list[int], num_ctx: int) -> None:
    """``truncate: false``: a prompt that does not fit is refused, never cut (Ollama's message first)."""
    budget = prompt_budget(num_ctx)
    if len(tokens) > budget:
        raise BadRequest(f"the input length exceeds the context length: the prompt is {len(tokens)} tokens and "
                         f"num_ctx {num_ctx} takes at most {budget} (truncate is false)")


def truncate_tokens(tokens: list[int], num_ctx: int, num_keep: int) -> list[int]:
    """Keep the first ``num_keep`` tokens and the tail, so the prompt fits the context (Ollama's rule)."""
    if len(tokens) <= num_ctx:
        return tokens
    keep = max(0, min(num_keep, num_ctx // 2))
    return tokens[:keep] + tokens[len(tokens) - (num_ctx - keep) :]


Fitted = tuple[str, list[int], list[Media]]  # prompt, its tokens (image positions negative), its images


def too_many_images(count: int, tokens: int, num_ctx: int) -> BadRequest:
    return BadRequest(f"too many images for the context: the prompt with {count} image(s) is {tokens} tokens, "
                      f"more than the context of {num_ctx} holds; send fewer images or raise num_ctx")


async def fit_chat(runner: RunnerLike, model: ModelLike, messages: list[ChatMessage],
                   tools: list[Tool] | None, think: bool | str | None, num_ctx: int,
                   images: list[list[Media]] | None = None, truncate: bool = True) -> Fitted:
    """Render the chat, dropping the oldest non-system messages until the prompt fits num_ctx
    (``truncate=False``: the whole chat or nothing; the caller refuses it when it does not fit).

    Dropping more messages never makes the prompt longer, so the smallest number to drop is found
    by bisection: a few tokenizations even for a very long history. ``images[i]`` are message i's
    decoded images: the kept ones are tagged into the text and counted by the runner's tokenizer.
    """
    from ollamalike.template import render_chat

    droppable = [i for i, m in enumerate(messages) if m["role"] != "system"]
    rendered: dict[int, Fitted] = {}

    async def attempt(k: int) -> Fitted:
        if k not in rendered:
            gone = set(droppable[:k])
            kept = [i for i in range(len(messages)) if i not in gone]
            keep, imgs = tag_messages([messages[i] for i in kept], [images[i] for i in kept] if images else
                                      [[] for _ in kept])
            # Off the event loop: a pathological template may take its whole time budget.
            prompt = await asyncio.to_thread(render_chat, model, keep, tools=tools, think=think)
            tokens = await (runner.tokenize(prompt, add_special=True, images=imgs) if imgs
                            else runner.tokenize(prompt, add_special=True))
            rendered[k] = (prompt, tokens, imgs)
        return rendered[k]

    prompt, tokens, imgs = await attempt(0)
    if len(tokens) <= num_ctx or not truncate:
        return prompt, tokens, imgs
    lo, hi = 1, max(len(droppable) - 1, 0)  # the latest message always stays
    if hi < lo or len((await attempt(hi))[1]) > num_ctx:
        # Even the latest message alone is too long: keep its tail, as generate does.
        prompt, tokens, imgs = await attempt(max(hi, 0))
        if imgs:  # a tail cut through images is no prompt: refuse it
            raise too_many_images(len(imgs), len(tokens), num_ctx)
        log.info("chat prompt truncated to the last %d tokens to fit num_ctx %d", num_ctx, num_ctx)
        return prompt, truncate_tokens(tokens, num_ctx, 0), imgs
    while lo < hi:
        mid = (lo + hi) // 2
        if len((await attempt(mid))[1]) <= num_ctx:
            hi = mid
        else:
            lo = mid + 1
    log.info("chat prompt truncated: dropped the %d oldest messages to fit num_ctx %d", lo, num_ctx)
    return await attempt(lo)
