"""The planner inside the scheduler: the GPU layout is chosen once per load (against the memory
free then), requests keep sharing a runner whatever free memory does afterwards, and a model that
does not fit evicts idle models before giving up with the planner's message."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from ollamalike.config import Config, load_config
from ollamalike.hardware.planner import InsufficientMemory
from ollamalike.library.models import ResolvedModel
from ollamalike.runner.spec import RunnerSpec
from ollamalike.scheduler import Scheduler
from ollamalike.scheduler.plan import LoadPlan
from tests.fakes import StubRunner, gguf_info, resolved_model


class Runner(StubRunner):
    async def stop(self) -> None:
        await asyncio.sleep(0.01)
        self.alive = False


class Starter:
    def __init__(self) -> None:
        self.started: list[Runner] = []

    async def __call__(self, spec: RunnerSpec, config: Config) -> Runner:
        runner = Runner(spec)
        self.started.append(runner)
        return runner


class Layout:
    """Stands in for layout_load: answers from a script of outcomes and records its calls."""

    def __init__(self, outcomes: list[int | Exception], starter: Starter | None = None) -> None:
        self.outcomes = outcomes
        self.calls: list[str] = []
        self.starter = starter
        self.alive_at_call: list[list[bool]] = []  # which runners were still running at each call

    def __call__(self, plan: LoadPlan, model: ResolvedModel, config: Config) -> LoadPlan:
        self.calls.append(str(model.name))
        if self.starter is not None:
            self.alive_at_call.append([r.alive for r in self.starter.started])
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, Exception):
            raise outcome
        return dataclasses.replace(plan, gpu_layers=outcome, size_vram=outcome, spec=dataclasses.replace(plan.spec, gpu_layers=outcome))


def model(tmp_path: Path, name: str) -> ResolvedModel:
    path = tmp_path / f"{name}.gguf"
    path.write_bytes(b"x" * 100)
    info = gguf_info(context_length=2048, block_count=2, embedding_length=64, head_count=4, head_count_kv=4,
                     is_embedding_model=False)
    return resolved_model(name=name, digest="sha256:" + "cd" * 32, model_path=path, adapters=[], details={}, info=info)


def scheduler(starter: Starter, layout: Layout) -> Scheduler:
    config = dataclasses.replace(load_config(), max_loaded_models=3, keep_alive=300.0)
    return Scheduler(config, start_runner=starter, free_memory=lambda: None, layout=layout)


TOO_BIG = InsufficientMemory("model requires more system memory (5.2 GiB) than is available (3.1 GiB)")


async def test_layout_once_per_load_and_runner_shared(tmp_path: Path) -> None:
    starter, layout = Starter(), Layout([7, 3, 1])  # free memory would give fewer layers each time
    sched = scheduler(starter, layout)
    m = model(tmp_path, "one")
    for _ in range(3):
        (await sched.acquire(m, {}, None)).release()
    assert len(starter.started) == 1 and layout.calls == ["one"]
    assert starter.started[0].spec.gpu_layers == 7  # the runner gets the laid-out count
    assert sched.ps()[0]["size_vram"] == 0  # the runner's own memory figures win when it reports them
    await sched.shutdown()


async def test_num_gpu_change_reloads(tmp_path: Path) -> None:
    starter, layout = Starter(), Layout([5])
    sched = scheduler(starter, layout)
    m = model(tmp_path, "one")
    (await sched.acquire(m, {}, None)).release()
    (await sched.acquire(m, {"num_gpu": 2}, None)).release()
    assert len(starter.started) == 2 and layout.calls == ["one", "one"]
    await sched.shutdown()


async def test_too_big_evicts_idle_model_then_loads(tmp_path: Path) -> None:
    starter = Starter()
    layout = Layout([4, TOO_BIG, 4], starter)
    sched = scheduler(starter, layout)
    (await sched.acquire(model(tmp_path, "old"), {}, None)).release()
    lease = await sched.acquire(model(tmp_path, "new"), {}, None)
    assert layout.calls == ["old", "new", "new"]
    assert layout.alive_at_call == [[], [True], [False]]  # the old runner had exited before the retry
    assert [p["name"] for p in sched.ps()] == ["new"]
    lease.release()
    await sched.shutdown()


async def test_too_big_with_nothing_to_evict_is_the_planners_error(tmp_path: Path) -> None:
    starter, layout = Starter(), Layout([TOO_BIG])
    sched = scheduler(starter, layout)
    with pytest.raises(InsufficientMemory) as e:
        await sched.acquire(model(tmp_path, "huge"), {}, None)
    assert e.value.status == 500 and "5.2 GiB" in e.value.message and "3.1 GiB" in e.value.message
    assert starter.started == [] and sched.ps() == []
    await sched.shutdown()


async def test_busy_model_is_not_evicted(tmp_path: Path) -> None:
    starter, layout = Starter(), Layout([4, TOO_BIG])
    sched = scheduler(starter, layout)
    busy = await sched.acquire(model(tmp_path, "busy"), {}, None)
    with pytest.raises(InsufficientMemory):
        await sched.acquire(model(tmp_path, "huge"), {}, None)
    assert starter.started[0].alive and [p["name"] for p in sched.ps()] == ["busy"]
    busy.release()
    await sched.shutdown()
