"""/api/health and /api/health/live on the real app (aiohttp test client), the scheduler's load
snapshot behind them (fake runners), the drain gate's 503 in each API's shape, and the config."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from ollamalike.config import load_config
from ollamalike.errors import BadRequest
from ollamalike.scheduler import Scheduler
from ollamalike.server.app import make_app
from ollamalike.server.health import get_drain
from tests.helpers import assert_api_error, assert_openai_error
from tests.test_scheduler import Starter, model, wait_until

KEY = "health-key"


@pytest.fixture
def make_client(aiohttp_client: Any, tmp_path: Path) -> Any:
    async def make(**env: str) -> Any:
        return await aiohttp_client(make_app(load_config({"OLLAMALIKE_HOME": str(tmp_path / "home"), **env})))

    return make


def _fake_scheduler(client: Any, starter: Starter, **overrides: Any) -> Scheduler:
    """Swap the app's scheduler for one with fake runners (the handler reads whatever the state holds)."""
    state = client.server.app["state"]
    state.scheduler = Scheduler(dataclasses.replace(state.config, **overrides), start_runner=starter,
                                free_memory=lambda: None)
    return state.scheduler


# -- the scheduler's snapshot --------------------------------------------------------------------------
async def test_snapshot_counts_busy_free_and_queued_per_model(tmp_path: Path) -> None:
    starter = Starter()
    sched = Scheduler(dataclasses.replace(load_config(), num_parallel=2, max_queue=8), start_runner=starter,
                      free_memory=lambda: None)
    empty = sched.snapshot()
    assert empty.models == () and empty.queued == 0 and empty.busy == 0 and empty.free == 0
    m = model(tmp_path)
    first = await sched.acquire(m, {}, None)
    snap = sched.snapshot()
    assert [(x.name, x.state, x.busy, x.free, x.queued) for x in snap.models] == [("tiny:latest", "ready", 1, 1, 0)]
    second = await sched.acquire(m, {}, None)
    third = asyncio.ensure_future(sched.acquire(m, {}, None))
    await wait_until(lambda: sched.snapshot().queued == 1)
    snap = sched.snapshot()
    assert [(x.busy, x.free, x.queued) for x in snap.models] == [(2, 0, 1)]
    assert (snap.busy, snap.free, snap.num_parallel, snap.max_queue) == (2, 0, 2, 8)
    first.release()
    lease = await third
    assert sched.snapshot().queued == 0 and sched.snapshot().models[0].queued == 0
    for x in (second, lease):
        x.release()
    await wait_until(lambda: sched.snapshot().models[0].busy == 0)
    assert sched.snapshot().models[0].free == 2
    await sched.shutdown()
    assert sched.snapshot().closed and sched.snapshot().models == ()


async def test_snapshot_shows_a_model_loading_with_no_free_slot(tmp_path: Path) -> None:
    starter = Starter()
    starter.gate = asyncio.Event()
    sched = Scheduler(dataclasses.replace(load_config(), num_parallel=1), start_runner=starter, free_memory=lambda: None)
    m = model(tmp_path)
    waiters = [asyncio.ensure_future(sched.acquire(m, {}, None)) for _ in range(3)]
    await wait_until(lambda: sched.snapshot().queued == 2)
    (loading,) = sched.snapshot().models
    assert (loading.state, loading.busy, loading.free, loading.queued) == ("loading", 0, 0, 2)
    starter.gate.set()
    lease = await waiters[0]
    lease.release()
    for w in waiters[1:]:
        (await w).release()
    await sched.shutdown()


# -- the endpoints --------------------------------------------------------------------------------------
async def test_health_reports_readiness_and_load(make_client: Any, tmp_path: Path) -> None:
    client = await make_client(OLLAMALIKE_NUM_PARALLEL="3", OLLAMALIKE_MAX_QUEUE="7")
    resp = await client.get("/api/health")
    body = await resp.json()
    assert resp.status == 200
    assert body["status"] == "ok" and body["ready"] is True and body["draining"] is False
    assert (body["queued"], body["max_queue"], body["num_parallel"]) == (0, 7, 3)
    assert (body["loaded_models"], body["busy"], body["free"], body["models"]) == (0, 0, 0, [])

    sched = _fake_scheduler(client, Starter())
    lease = await sched.acquire(model(tmp_path), {}, None)
    body = await (await client.get("/api/health")).json()
    assert body["models"] == [{"name": "tiny:latest", "state": "ready", "busy": 1, "free": 2, "queued": 0}]
    assert (body["loaded_models"], body["busy"], body["free"]) == (1, 1, 2)
    lease.release()
    await sched.shutdown()
    resp = await client.get("/api/health")
    assert resp.status == 503 and (await resp.json())["ready"] is False


async def test_liveness_answers_without_the_store_or_the_scheduler(make_client: Any) -> None:
    client = await make_client()
    state = client.server.app["state"]
    # Broken on purpose: the liveness probe must not touch either.
    state.scheduler, state.store = None, None
    resp = await client.get("/api/health/live")
    assert resp.status == 200 and await resp.json() == {"status": "alive"}
    assert (await client.head("/api/health/live")).status == 200


async def test_with_api_keys_health_is_open_but_names_models_only_for_a_key(make_client: Any, tmp_path: Path) -> None:
    client = await make_client(OLLAMALIKE_API_KEY=KEY)
    sched = _fake_scheduler(client, Starter())
    lease = await sched.acquire(model(tmp_path), {}, None)
    for path in ("/api/health", "/api/health/live"):
        assert (await client.get(path)).status == 200
    anonymous = await (await client.get("/api/health")).json()
    assert "models" not in anonymous and "tiny" not in str(anonymous)
    assert (anonymous["loaded_models"], anonymous["busy"]) == (1, 1)
    wrong = await (await client.get("/api/health", headers={"Authorization": "Bearer nope"})).json()
    assert "models" not in wrong
    keyed = await (await client.get("/api/health", headers={"Authorization": f"Bearer {KEY}"})).json()
    assert [m["name"] for m in keyed["models"]] == ["tiny:latest"]
    # Opening the probes opened nothing else.
    for method, path in (("GET", "/api/ps"), ("POST", "/api/health"), ("GET", "/api/healthz"), ("GET", "/api/health/x")):
        resp = await client.request(method, path)
        assert_api_error(resp.status, await resp.read(), 401, "unauthorized")
    lease.release()
    await sched.shutdown()


async def test_while_draining_new_work_gets_503_with_retry_after_in_each_shape(make_client: Any) -> None:
    client = await make_client()
    drain = get_drain(client.server.app)
    drain.draining = True
    resp = await client.post("/api/generate", json={"model": "tiny", "prompt": "x"})
    assert_api_error(resp.status, await resp.read(), 503, "shutting down")
    assert int(resp.headers["Retry-After"]) >= 1
    resp = await client.post("/v1/chat/completions", json={"model": "tiny", "messages": []})
    assert_openai_error(resp.status, await resp.read(), 503, "shutting down")
    assert int(resp.headers["Retry-After"]) >= 1
    for method, path in (("POST", "/api/pull"), ("DELETE", "/api/delete"), ("POST", "/api/create")):
        resp = await client.request(method, path, json={})
        assert_api_error(resp.status, await resp.read(), 503, "shutting down")
    # Reads still work; readiness fails, liveness does not.
    assert (await client.get("/api/tags")).status == 200
    resp = await client.get("/api/health")
    assert resp.status == 503 and (await resp.json())["status"] == "draining"
    assert (await client.get("/api/health/live")).status == 200


async def test_drain_with_nothing_in_flight_returns_at_once(make_client: Any) -> None:
    client = await make_client()
    drain = get_drain(client.server.app)
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await drain.run(30.0)
    assert (result.finished, result.cut) == (0, 0)
    assert loop.time() - started < 1.0 and drain.draining


# -- configuration ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "seconds"), [(None, 30.0), ("45", 45.0), ("2m", 120.0), ("0", 0.0), ("1.5s", 1.5)])
def test_drain_timeout_config(value: str | None, seconds: float) -> None:
    env = {} if value is None else {"OLLAMALIKE_DRAIN_TIMEOUT": value}
    assert load_config(env).drain_timeout == seconds


@pytest.mark.parametrize("value", ["-1", "soon", "5 minutes"])
def test_bad_drain_timeout_is_a_clear_error(value: str) -> None:
    with pytest.raises(BadRequest, match="DRAIN_TIMEOUT|invalid duration"):
        load_config({"OLLAMALIKE_DRAIN_TIMEOUT": value})
