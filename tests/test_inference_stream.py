"""Tool-call buffering, prompt truncation and stream joining."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ollamalike.inference import collect
from ollamalike.inference.service import _shorten, truncate_tokens
from ollamalike.inference.stream import ToolStream

TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]


@pytest.mark.parametrize(
    "pieces, streamed, held",
    [
        (["Hello", " world"], "Hello world", ""),
        # Held while it may be a call; streamed once it cannot be one (it used to be held to the end).
        (["  ", "{\"name\""], "", "  {\"name\""),
        (["  ", "{\"name\"", ": 1}"], "  {\"name\": 1}", ""),
        (["<tool", "_call>{\"na"], "", "<tool_call>{\"na"),
        (["<tool", "_call>{}"], "<tool_call>{}", ""),
        (["<b>hi"], "<b>hi", ""),
        (["Hi <tool", "_call>"], "Hi ", "<tool_call>"),  # text before a call streams at once
    ],
)
def test_tool_stream_holds_only_what_may_be_a_call(pieces: list[str], streamed: str, held: str) -> None:
    b = ToolStream(None, TOOLS)
    out = "".join(b.feed(p)[0] for p in pieces)
    assert (out, b.flush()) == (streamed, (held, []))


@pytest.mark.parametrize(
    "n, num_ctx, num_keep, expected",
    [
        (10, 20, 4, list(range(10))),
        (10, 6, 2, [0, 1, 6, 7, 8, 9]),
        (10, 4, 0, [6, 7, 8, 9]),
        (10, 4, 100, [0, 1, 8, 9]),  # num_keep never takes more than half the context
    ],
)
def test_truncate_tokens(n: int, num_ctx: int, num_keep: int, expected: list[int]) -> None:
    out = truncate_tokens(list(range(n)), num_ctx, num_keep)
    assert out == expected and len(out) <= num_ctx


def test_shorten_renormalises() -> None:
    v = [0.6, 0.8, 0.0, 0.0]
    assert _shorten(v, None) == v and _shorten(v, 8) == v
    short = _shorten([0.5, 0.5, 0.5, 0.5], 2)
    assert len(short) == 2 and math.isclose(sum(x * x for x in short), 1.0)


async def _chunks(items: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    for item in items:
        yield item


async def test_collect_joins_generate_and_chat() -> None:
    gen = await collect(_chunks([
        {"model": "m", "created_at": "t", "response": "a", "done": False},
        {"model": "m", "created_at": "t", "response": "b", "thinking": "hmm", "done": False},
        {"model": "m", "created_at": "t2", "response": "", "done": True, "done_reason": "stop", "eval_count": 2},
    ]))
    assert gen["response"] == "ab" and gen["thinking"] == "hmm" and gen["eval_count"] == 2
    assert list(gen)[:4] == ["model", "created_at", "response", "thinking"]
    call = {"function": {"name": "f", "arguments": {}}}
    chat = await collect(_chunks([
        {"model": "m", "message": {"role": "assistant", "content": "x"}, "done": False},
        {"model": "m", "message": {"role": "assistant", "content": "", "tool_calls": [call]}, "done": False},
        {"model": "m", "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop"},
    ]))
    assert chat["message"] == {"role": "assistant", "content": "x", "tool_calls": [call]}
    assert chat["done"] is True


async def test_collect_rejects_a_stream_without_its_final_object() -> None:
    with pytest.raises(Exception, match="before it was complete"):
        await collect(_chunks([{"model": "m", "response": "a", "done": False}]))
