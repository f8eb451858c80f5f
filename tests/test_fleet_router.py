"""A real LLM router in front (issue 18): two REAL daemons serving the tiny model behind LiteLLM's
``Router`` with ``least-busy`` routing, all on 127.0.0.1.

Requests spread over both daemons; when one is SIGTERMed mid-traffic, every request still completes
(in flight on the drained daemon, or failed over to the other), none is lost, and the drained daemon
exits 0. LiteLLM is kept offline: its model cost map is read from the package
(``LITELLM_LOCAL_MODEL_COST_MAP``) and its telemetry is off.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import Daemon, start_daemon
from tests.infer_helpers import create_model

pytestmark = pytest.mark.e2e

# Before litellm is imported: no download of the cost map at import time.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_TELEMETRY", "False")

REQUESTS = 16
CONCURRENCY = 4
MAX_TOKENS = 16


def _router(daemons: list[Daemon]) -> Any:
    import litellm
    from litellm import Router

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    deployments = [
        {"model_name": "tiny",
         "litellm_params": {"model": "openai/tiny", "api_base": f"{d.base_url}/v1", "api_key": "unused",
                            "timeout": 60, "max_retries": 0},
         "model_info": {"id": f"daemon-{i}"}}
        for i, d in enumerate(daemons)
    ]
    # Retries fail over: a refused or 503 deployment is cooled down and the next try goes elsewhere.
    return Router(model_list=deployments, routing_strategy="least-busy", num_retries=4, allowed_fails=0,
                  cooldown_time=60, retry_after=0)


def _served(d: Daemon) -> int:
    return len(re.findall(r"POST /v1/chat/completions 200 ", d.logs()))


async def _traffic(router: Any, on_progress: Callable[[int], None]) -> list[str]:
    sem = asyncio.Semaphore(CONCURRENCY)
    done = 0

    async def one(i: int) -> str:
        nonlocal done
        async with sem:
            resp = await router.acompletion(model="tiny", messages=[{"role": "user", "content": f"request {i}"}],
                                            max_tokens=MAX_TOKENS, temperature=0)
        done += 1
        on_progress(done)
        return str(resp.choices[0].message.content)

    return await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(REQUESTS))), timeout=240)


@pytest.fixture(scope="module")
def two_daemons(tiny_chat_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Daemon]]:
    """One pair for the module (the SIGTERM test, last, stops one); the model is loaded on both."""
    daemons: list[Daemon] = []
    try:
        for i in range(2):
            home = tmp_path_factory.mktemp(f"fleet-{i}")
            d = start_daemon(home, {"OLLAMALIKE_DRAIN_TIMEOUT": "60s", "OLLAMALIKE_NUM_PARALLEL": "2"})
            daemons.append(d)
            create_model(d, "tiny", f"FROM {tiny_chat_gguf}\n", home)
            status, body = d.request("POST", "/api/generate", {"model": "tiny", "prompt": "", "stream": False})
            assert status == 200, body
        yield daemons
    finally:
        errors = []
        for d in daemons:
            print(f"--- daemon log ({d.base_url}) ---\n{d.logs()}")
            try:
                d.stop()
            except AssertionError as e:
                errors.append(str(e))
        assert not errors, "\n".join(errors)


async def test_least_busy_router_spreads_requests_over_both_daemons(two_daemons: list[Daemon]) -> None:
    before = [_served(d) for d in two_daemons]
    router = _router(two_daemons)
    answers = await _traffic(router, lambda _n: None)
    assert len(answers) == REQUESTS and all(isinstance(a, str) for a in answers)
    served = [_served(d) - b for d, b in zip(two_daemons, before, strict=True)]
    assert sum(served) == REQUESTS, served
    assert min(served) >= REQUESTS // 4, f"least-busy should use both daemons: {served}"


async def test_sigterm_one_daemon_mid_traffic_loses_nothing(two_daemons: list[Daemon]) -> None:
    victim, survivor = two_daemons
    before = [_served(d) for d in two_daemons]
    victim.note_children()
    router = _router(two_daemons)
    signalled: list[float] = []

    def progress(done: int) -> None:
        if done == REQUESTS // 4 and not signalled:
            victim.note_children()
            victim.proc.send_signal(signal.SIGTERM)
            signalled.append(time.monotonic())

    started = time.monotonic()
    answers = await _traffic(router, progress)
    elapsed = time.monotonic() - started
    assert signalled, "the victim was never signalled"
    assert len(answers) == REQUESTS, "every request must complete"
    victim.proc.wait(90)
    victim_served, survivor_served = (_served(d) - b for d, b in zip(two_daemons, before, strict=True))
    assert victim_served + survivor_served == REQUESTS, (victim_served, survivor_served)
    assert victim_served >= 1 and survivor_served > REQUESTS // 2, (victim_served, survivor_served)
    assert elapsed < 200, f"traffic took {elapsed:.0f}s"
    assert victim.stop() == 0  # exit 0, no runner left
    assert "drained:" in victim.logs() and " 0 cut" in victim.logs()
