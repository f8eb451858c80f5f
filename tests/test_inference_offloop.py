"""Prompt rendering runs off the event loop: a slow (hostile) template cannot stall the daemon."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from ollamalike.inference import service
from tests.fakes import StubRunner, resolved_model


class _Runner(StubRunner):
    """One token per word (StubRunner's tokenizer)."""


async def test_chat_render_runs_in_a_worker_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def slow_render(model: Any, messages: Any, tools: Any = None, think: Any = None) -> str:
        seen.append(threading.current_thread().name)
        time.sleep(0.3)
        return "a b c"

    monkeypatch.setattr("ollamalike.template.render_chat", slow_render)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        prompt, tokens = await service._fit_chat(_Runner(), resolved_model(), [{"role": "user", "content": "hi"}],
                                                 None, None, num_ctx=100)
    finally:
        task.cancel()
    assert prompt == "a b c" and tokens == [0, 1, 2]
    assert seen and seen[0] != threading.main_thread().name
    # The loop kept running while the template rendered (0.3 s at 10 ms ticks).
    assert ticks >= 10
