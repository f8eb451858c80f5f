"""Scheduler unit tests with a fake runner implementing the RunnerProcess contract.

The real runner path is covered end to end in tests/test_api_infer*.py; here the fake lets us
count starts and stops and control timing exactly.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from ollamalike.config import load_config
from ollamalike.errors import BadRequest, Overloaded, RunnerError
from ollamalike.library.models import ResolvedModel
from ollamalike.runner.spec import RunnerSpec
from ollamalike.scheduler import Scheduler
from ollamalike.scheduler.plan import plan_load
from tests.fakes import StubRunner, gguf_info, resolved_model


class FakeRunner(StubRunner):
    def __init__(self, spec: RunnerSpec) -> None:
        super().__init__(spec)
        self.memory = {"size": 1000, "size_vram": 0}


class Starter:
    def __init__(self, delay: float = 0.0, fail: int = 0) -> None:
        self.delay = delay
        self.fail = fail
        self.started: list[FakeRunner] = []
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()  # a start is under way (waiting at the gate, if any)

    async def __call__(self, spec: RunnerSpec, config: Any) -> FakeRunner:
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(self.delay)
        if self.fail:
            self.fail -= 1
            raise RunnerError("llama.cpp could not load the model: bad tensor")
        runner = FakeRunner(spec)
        self.started.append(runner)
        return runner


def model(tmp_path: Path, name: str = "tiny:latest", ctx: int = 2048) -> ResolvedModel:
    path = tmp_path / f"{name.replace(':', '_')}.gguf"
    path.write_bytes(b"x" * 100)
    info = gguf_info(context_length=ctx, block_count=2, embedding_length=64, head_count=4, head_count_kv=4,
                     is_embedding_model=False)
    return resolved_model(name=name, digest="sha256:" + "ab" * 32, model_path=path, adapters=[],
                           details={"family": "llama"}, info=info)


def make(starter: Starter, free: int | None = None, **overrides: Any) -> Scheduler:
    config = dataclasses.replace(load_config(), **overrides)
    return Scheduler(config, start_runner=starter, free_memory=lambda: free)


async def wait_until(cond: Any, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


async def test_concurrent_first_requests_start_one_runner(tmp_path: Path) -> None:
    starter = Starter(delay=0.05)
    sched = make(starter, num_parallel=4)
    m = model(tmp_path)
    leases = await asyncio.gather(*(sched.acquire(m, {}, None) for _ in range(4)))
    assert len(starter.started) == 1
    assert {id(lease.runner) for lease in leases} == {id(starter.started[0])}
    assert sum(1 for lease in leases if lease.load_duration_ns > 0) == 1
    assert max(lease.load_duration_ns for lease in leases) >= 50_000_000
    for lease in leases:
        lease.release()
    await sched.shutdown()
    assert starter.started[0].stopped


async def test_parallel_limit_queues_and_max_queue_rejects(tmp_path: Path) -> None:
    starter = Starter()
    sched = make(starter, num_parallel=1, max_queue=1)
    m = model(tmp_path)
    first = await sched.acquire(m, {}, None)
    queued = asyncio.create_task(sched.acquire(m, {}, None))
    await wait_until(lambda: sched._waiting == 1)
    with pytest.raises(Overloaded, match="maximum pending requests"):
        await sched.acquire(m, {}, None)
    assert not queued.done()
    first.release()
    second = await asyncio.wait_for(queued, 5)
    assert second.runner is first.runner and second.load_duration_ns == 0
    second.release()
    await sched.shutdown()


async def test_keep_alive_zero_unloads_after_last_request(tmp_path: Path) -> None:
    starter = Starter()
    sched = make(starter, num_parallel=2)
    m = model(tmp_path)
    a = await sched.acquire(m, {}, 0)
    b = await sched.acquire(m, {}, 0)
    a.release()
    await asyncio.sleep(0.01)
    assert not starter.started[0].stopped
    b.release()
    await wait_until(lambda: starter.started[0].stopped)
    assert sched.ps() == []


async def test_keep_alive_timer_and_forever(tmp_path: Path) -> None:
    starter = Starter()
    sched = make(starter)
    short, forever = model(tmp_path, "short:latest"), model(tmp_path, "forever:latest")
    (await sched.acquire(short, {}, 0.05)).release()
    (await sched.acquire(forever, {}, -1)).release()
    await wait_until(lambda: starter.started[0].stopped)
    ps = sched.ps()
    assert [p["name"] for p in ps] == ["forever:latest"]
    assert ps[0]["expires_at"] > "2200"
    assert not starter.started[1].stopped
    await sched.shutdown()
    assert starter.started[1].stopped


async def test_ps_entry_fields(tmp_path: Path) -> None:
    sched = make(Starter())
    m = model(tmp_path)
    lease = await sched.acquire(m, {"num_ctx": 1024}, 300)
    (entry,) = sched.ps()
    assert entry["name"] == entry["model"] == "tiny:latest"
    assert entry["digest"] == "ab" * 32
    assert entry["size"] == 1000 and entry["size_vram"] == 0
    assert entry["context_length"] == 1024 == lease.num_ctx
    assert entry["details"] == {"family": "llama"}
    assert entry["expires_at"][:2] == "20" and "T" in entry["expires_at"]
    lease.release()
    await sched.shutdown()


async def test_different_runner_options_reload_after_drain(tmp_path: Path) -> None:
    starter = Starter()
    sched = make(starter, num_parallel=2)
    m = model(tmp_path)
    a = await sched.acquire(m, {"num_ctx": 512}, None)
    same = await sched.acquire(m, {"num_ctx": 512, "temperature": 0.1}, None)
    assert same.runner is a.runner  # sampling options do not need another runner
    same.release()
    bigger = asyncio.create_task(sched.acquire(m, {"num_ctx": 1024}, None))
    await asyncio.sleep(0.02)
    assert not bigger.done() and len(starter.started) == 1  # waits for the in-flight request
    a.release()
    b = await asyncio.wait_for(bigger, 5)
    assert len(starter.started) == 2 and b.runner is starter.started[1]
    assert b.num_ctx == 1024 and starter.started[1].spec.ctx_size == 1024 * 2
    await wait_until(lambda: starter.started[0].stopped)
    b.release()
    await sched.shutdown()


async def test_embeddings_share_the_chat_runner_and_do_not_wait_for_generations(tmp_path: Path) -> None:
    # Issue 13: an embed on a loaded chat model used to reload it in embedding mode, waiting for
    # every generation. Now it uses the same runner at once; embeds have their own num_parallel slots.
    starter = Starter()
    sched = make(starter, num_parallel=1, max_queue=4)
    m = model(tmp_path)
    chat = await sched.acquire(m, {}, None)
    embed = await asyncio.wait_for(sched.acquire(m, {}, None, embedding=True), 1)
    assert embed.runner is chat.runner and len(starter.started) == 1
    assert embed.load_duration_ns == 0 and starter.started[0].spec.embedding is False
    second_embed = asyncio.create_task(sched.acquire(m, {}, None, embedding=True))
    second_chat = asyncio.create_task(sched.acquire(m, {}, None))
    await wait_until(lambda: sched._waiting == 2)  # both kinds queue behind their own kind only
    embed.release()
    (await asyncio.wait_for(second_embed, 1)).release()
    assert not second_chat.done()
    chat.release()
    (await asyncio.wait_for(second_chat, 1)).release()
    assert len(starter.started) == 1
    await sched.shutdown()


async def test_dead_runner_is_reloaded(tmp_path: Path) -> None:
    starter = Starter()
    sched = make(starter)
    m = model(tmp_path)
    (await sched.acquire(m, {}, None)).release()
    starter.started[0].alive = False  # the process died (segfault, OOM kill)
    assert sched.ps() == []
    lease = await sched.acquire(m, {}, None)
    assert lease.runner is starter.started[1] and lease.load_duration_ns > 0
    lease.release()
    await sched.shutdown()


async def test_load_failure_reaches_every_waiter_and_next_request_retries(tmp_path: Path) -> None:
    starter = Starter(delay=0.02, fail=1)
    sched = make(starter)
    m = model(tmp_path)
    results = await asyncio.gather(*(sched.acquire(m, {}, None) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, RunnerError) and "bad tensor" in str(r) for r in results)
    assert starter.started == []
    lease = await sched.acquire(m, {}, None)
    assert len(starter.started) == 1
    lease.release()
    await sched.shutdown()


async def test_disconnected_first_requester_does_not_cancel_the_load(tmp_path: Path) -> None:
    starter = Starter()
    starter.gate = asyncio.Event()
    sched = make(starter)
    m = model(tmp_path)
    first = asyncio.create_task(sched.acquire(m, {}, None))
    second = asyncio.create_task(sched.acquire(m, {}, None))
    await asyncio.wait_for(starter.entered.wait(), 5)  # the first acquire is starting the runner
    first.cancel()
    starter.gate.set()
    lease = await asyncio.wait_for(second, 5)
    assert len(starter.started) == 1
    lease.release()
    await sched.shutdown()


async def test_max_loaded_models_evicts_least_recently_used_idle(tmp_path: Path) -> None:
    starter = Starter()
    sched = make(starter, max_loaded_models=2)
    a, b, c = (model(tmp_path, f"{n}:latest") for n in "abc")
    (await sched.acquire(a, {}, None)).release()
    (await sched.acquire(b, {}, None)).release()
    (await sched.acquire(a, {}, None)).release()  # a is now the most recently used
    await asyncio.sleep(0)
    (await sched.acquire(c, {}, None)).release()
    await wait_until(lambda: starter.started[1].stopped)
    assert sorted(p["name"] for p in sched.ps()) == ["a:latest", "c:latest"]
    await sched.shutdown()


async def test_busy_models_are_not_evicted_new_model_waits(tmp_path: Path) -> None:
    starter = Starter()
    sched = make(starter, max_loaded_models=1)
    a, b = model(tmp_path, "a:latest"), model(tmp_path, "b:latest")
    lease_a = await sched.acquire(a, {}, None)
    waiting = asyncio.create_task(sched.acquire(b, {}, None))
    await asyncio.sleep(0.02)
    assert not waiting.done() and not starter.started[0].stopped
    lease_a.release()
    lease_b = await asyncio.wait_for(waiting, 5)
    assert starter.started[0].stopped and lease_b.runner is starter.started[1]
    lease_b.release()
    await sched.shutdown()


async def test_memory_pressure_evicts_idle_model(tmp_path: Path) -> None:
    starter = Starter()
    m1, m2 = model(tmp_path, "one:latest"), model(tmp_path, "two:latest")
    need = plan_load(m2, {}, load_config()).size
    sched = make(starter, free=need - 1, max_loaded_models=3)
    (await sched.acquire(m1, {}, None)).release()
    (await sched.acquire(m2, {}, None)).release()
    await wait_until(lambda: starter.started[0].stopped)
    assert [p["name"] for p in sched.ps()] == ["two:latest"]
    await sched.shutdown()


async def test_unload_waits_for_active_request(tmp_path: Path) -> None:
    starter = Starter()
    sched = make(starter)
    m = model(tmp_path)
    lease = await sched.acquire(m, {}, None)
    assert await sched.unload(m)
    assert not starter.started[0].stopped
    lease.release()
    await wait_until(lambda: starter.started[0].stopped)
    assert not await sched.unload(m)
    await sched.shutdown()


def test_plan_num_ctx_rules(tmp_path: Path) -> None:
    config = load_config()
    m = model(tmp_path, ctx=2048)
    assert plan_load(m, {}, config).num_ctx == 2048  # default 4096 capped at the training context
    assert plan_load(m, {"num_ctx": 256}, config).num_ctx == 256
    assert plan_load(m, {"num_ctx": 100_000}, config).num_ctx == 2048
    assert plan_load(m, {}, dataclasses.replace(config, context_length=1000)).num_ctx == 1000
    assert plan_load(model(tmp_path, ctx=0), {}, config).num_ctx == 4096
    with pytest.raises(BadRequest, match="num_ctx"):
        plan_load(m, {"num_ctx": -5}, config)
    small, big = plan_load(m, {"num_ctx": 128}, config), plan_load(m, {"num_ctx": 2048}, config)
    assert big.size > small.size > 100  # file size plus a KV estimate that grows with the context


@pytest.mark.parametrize(("num_batch", "parallel", "expected"), [
    (None, 4, 512),
    (4, 4, 4),
    (1, 1, 1),
    (10**9, 4, 1024),  # never more than a slot's context (llama.cpp clamps to the context too)
    (1, 4, "at least the number of parallel sequences (4), got 1"),  # llama.cpp would abort on it
    (3, 4, "got 3"),
])
def test_plan_num_batch_rules(tmp_path: Path, num_batch: int | None, parallel: int, expected: int | str) -> None:
    config = dataclasses.replace(load_config(), num_parallel=parallel)
    options: dict[str, Any] = {"num_ctx": 1024} | ({} if num_batch is None else {"num_batch": num_batch})
    if isinstance(expected, str):
        with pytest.raises(BadRequest, match=re.escape(expected)):
            plan_load(model(tmp_path), options, config)
    else:
        plan = plan_load(model(tmp_path, ctx=4096), options, config)
        assert plan.spec.num_batch == expected
        assert plan.size < 2**32  # a huge num_batch no longer inflates the memory estimate


async def test_default_keep_alive_comes_from_config(tmp_path: Path) -> None:
    starter = Starter()
    sched = make(starter, keep_alive=0.05)  # OLLAMALIKE_KEEP_ALIVE
    (await sched.acquire(model(tmp_path), {}, None)).release()
    await wait_until(lambda: starter.started[0].stopped)
    assert sched.ps() == []


async def test_shutdown_stops_a_model_still_loading(tmp_path: Path) -> None:
    starter = Starter()
    starter.gate = asyncio.Event()
    sched = make(starter)
    pending = asyncio.create_task(sched.acquire(model(tmp_path), {}, None))
    await asyncio.wait_for(starter.entered.wait(), 5)  # the model is loading
    closing = asyncio.create_task(sched.shutdown())
    starter.gate.set()
    await asyncio.wait_for(closing, 5)
    assert starter.started and starter.started[0].stopped
    with pytest.raises(RunnerError, match="shutting down"):
        await asyncio.wait_for(pending, 5)
    with pytest.raises(RunnerError, match="shutting down"):
        await sched.acquire(model(tmp_path), {}, None)
