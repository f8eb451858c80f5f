"""How the scheduler starts a runner (a local runner process, or a remote engine's client) and reads
free memory; the ``Scheduler`` takes these as parameters, so tests hand it fakes of the same types.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ollamalike.config import Config
from ollamalike.remote.engine import Engine
from ollamalike.runner.like import RunnerLike
from ollamalike.runner.spec import RunnerSpec

StartRunner = Callable[[RunnerSpec, Config], Awaitable[RunnerLike]]
StartRemote = Callable[[Engine, Config], Awaitable[RunnerLike]]


async def start_real_runner(spec: RunnerSpec, config: Config) -> RunnerLike:
    from ollamalike.runner.client import RunnerProcess

    return await RunnerProcess.start(spec, config)


async def start_remote_runner(engine: Engine, config: Config) -> RunnerLike:
    from ollamalike.remote.client import RemoteRunner

    return await RemoteRunner.start(engine, config)


def free_memory() -> int | None:
    from ollamalike.hardware import available_memory

    return available_memory()
