"""The registry retry policy (``registry/retry.py``) on its own, and proxy failures as clear 502s.

Table-driven: which failures are retried, the budget before and after a registry first answered,
backoff bounds and Retry-After, stall counting. Then ``RegistryClient.request`` against loopback
servers on a fake clock (no real waiting): what it retries and how long it would wait. Then a
loopback proxy that refuses CONNECT with 407 or 403, and one that is not listening, through
``pull_model`` and through the real daemon (``HTTPS_PROXY``).
"""

from __future__ import annotations

import asyncio
import socket
import socketserver
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from ollamalike.config import Config, Proxies
from ollamalike.errors import RegistryError
from ollamalike.names import ModelName
from ollamalike.registry import oci
from ollamalike.registry.pull import pull_model
from ollamalike.registry.reading import STALL_MIN_BYTES
from ollamalike.registry.retry import TRANSIENT_STATUS, RetryPolicy, Stalls, Tries, is_transient
from ollamalike.store import Store
from tests.daemon import Daemon
from tests.helpers import assert_api_error, store_snapshot


class FakeClock:
    """A ``sleep`` that only records what it was asked to wait."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)


def _connector_error(cls: type[aiohttp.ClientConnectorError]) -> aiohttp.ClientConnectorError:
    key = aiohttp.client_reqrep.ConnectionKey("h", 1, False, True, None, None, None)
    return cls(key, OSError(111, "refused"))


def _proxy_refusal(status: int) -> aiohttp.ClientHttpProxyError:
    return aiohttp.ClientHttpProxyError(None, (), status=status, message="Proxy Authentication Required")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (aiohttp.ServerDisconnectedError(), True),
        (aiohttp.ClientOSError(104, "reset"), True),
        (aiohttp.ClientPayloadError("cut short"), True),
        (asyncio.TimeoutError(), True),
        (aiohttp.ConnectionTimeoutError(), True),
        (_connector_error(aiohttp.ClientConnectorError), True),
        (_connector_error(aiohttp.ClientProxyConnectionError), True),  # a proxy restarting: a blip
        (_connector_error(aiohttp.ClientConnectorDNSError), False),  # the name does not resolve
        (_connector_error(aiohttp.ClientConnectorCertificateError), False),  # TLS: never better on a retry
        (_proxy_refusal(407), False),
        (_proxy_refusal(403), False),
        (aiohttp.ClientResponseError(None, (), status=400), False),  # type: ignore[arg-type]
        (ValueError("a bug"), False),
        (RegistryError("already mapped"), False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_which_failures_are_retried(error: BaseException, retried: bool) -> None:
    assert is_transient(error) is retried


@pytest.mark.parametrize(
    ("status", "retried"),
    [(408, True), (429, True), (500, True), (502, True), (503, True), (504, True),
     (200, False), (301, False), (400, False), (401, False), (403, False), (404, False),
     (407, False), (413, False), (416, False), (501, False), (505, False)],
)
def test_which_statuses_are_retried(status: int, retried: bool) -> None:
    assert RetryPolicy.retryable_status(status) is retried
    assert (status in TRANSIENT_STATUS) is retried


@pytest.mark.parametrize(
    ("attempts", "first_contact", "reached", "budget"),
    [
        (6, 3, False, 3),  # never answered: give up after 3 quick tries
        (6, 3, True, 6),  # once it answered: the whole budget
        (2, 3, False, 2),  # a budget smaller than the quick give-up is never exceeded
        (1, 3, True, 1),
        (10, 5, False, 5),
    ],
)
def test_budget_before_and_after_first_answer(attempts: int, first_contact: int, reached: bool, budget: int) -> None:
    policy = RetryPolicy(attempts=attempts, first_contact_attempts=first_contact)
    assert policy.budget(reached) == budget
    tries = Tries(policy)
    allowed = 0
    while tries.failed(policy.budget(reached)):
        allowed += 1
    assert allowed == budget - 1 and tries.failures == budget  # budget tries: budget - 1 retries


@pytest.mark.parametrize(
    ("step", "retry_after", "expected"),
    [
        (0, None, 0.25),
        (1, None, 0.5),
        (2, None, 1.0),
        (4, None, 4.0),
        (5, None, 8.0),  # capped
        (40, None, 8.0),
        (-1, None, 0.25),  # never below the base
        (0, "3", 3.0),  # Retry-After in seconds is obeyed...
        (3, " 2 ", 2.0),
        (0, "120", 8.0),  # ...up to the cap
        (0, "0", 0.0),
        (1, "Wed, 21 Oct 2015 07:28:00 GMT", 0.5),  # a date is not followed: the backoff applies
        (1, "-5", 0.5),
        (1, "1.5", 0.5),
        (1, "", 0.5),
    ],
)
def test_backoff_bounds(step: int, retry_after: str | None, expected: float) -> None:
    assert RetryPolicy().delay(step, retry_after) == expected


async def test_pause_uses_the_policy_clock() -> None:
    clock = FakeClock()
    policy = RetryPolicy(base_delay=1.0, max_delay=3.0, sleep=clock.sleep)
    for step in range(4):
        await policy.pause(step)
    await policy.pause(0, "2")
    assert clock.waits == [1.0, 2.0, 3.0, 3.0, 2.0]


def test_tries_reset_and_left() -> None:
    tries = Tries(RetryPolicy(attempts=3))
    assert tries.failed() and tries.failed() and not tries.failed()
    assert not tries.left()
    tries.reset()  # progress: earlier failures no longer count
    assert tries.left() and tries.failures == 0


@pytest.mark.parametrize(
    ("progress", "allowed"),
    [
        ([0, 0, 0], [True, True, False]),  # three stalls in a row without progress: give up
        ([0, 10, 10], [True, True, False]),  # a trickle is not progress
        ([0, STALL_MIN_BYTES, 0], [True, True, True]),  # real progress forgives the stalls before
        ([0, STALL_MIN_BYTES - 1, 0], [True, True, False]),
        ([STALL_MIN_BYTES] * 6, [True] * 6),  # a stream that keeps moving between stalls goes on
    ],
)
def test_stall_counting(progress: list[int], allowed: list[bool]) -> None:
    stalls = Stalls(RetryPolicy(), done=100)
    done = 100
    got = []
    for step in progress:
        done += step
        got.append(stalls.stalled(done))
    assert got == allowed


# ---- RegistryClient.request on a fake clock ----------------------------------------------------


@pytest.fixture
async def flaky() -> AsyncIterator[tuple[str, list[int]]]:
    """A loopback server whose /v2/ns/m/manifests/<n> fails with <n> 503s (Retry-After: 1), then answers."""
    hits: dict[str, int] = {}
    seen: list[int] = []

    async def handle(request: web.Request) -> web.Response:
        key = request.match_info["ref"]
        hits[key] = hits.get(key, 0) + 1
        failing = int(key)
        if hits[key] <= failing:
            seen.append(503)
            return web.Response(status=503, headers={"Retry-After": "1"})
        seen.append(200)
        return web.Response(body=b"{}")

    app = web.Application()
    app.router.add_get("/v2/ns/m/manifests/{ref}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(("failing", "answered"), [(0, True), (2, True), (5, True), (6, False), (9, False)])
async def test_request_retries_transient_statuses_with_retry_after(
    flaky: tuple[str, list[int]], failing: int, answered: bool
) -> None:
    host, seen = flaky
    clock = FakeClock()
    async with oci.new_session() as session:
        client = oci.RegistryClient(
            session, ModelName.parse(f"{host}/ns/m:t"), insecure=True, retry=RetryPolicy(sleep=clock.sleep)
        )
        if answered:
            resp = await client.request("GET", f"{client.base}/manifests/{failing}")
            resp.release()
            assert resp.status == 200
        else:
            with pytest.raises(RegistryError, match="answered HTTP 503"):
                await client.request("GET", f"{client.base}/manifests/{failing}")
    tries = min(failing + 1, 6)
    assert len(seen) == tries
    assert clock.waits == [1.0] * (tries - 1)  # the server's Retry-After, not the backoff


async def test_request_without_retry_fails_at_once(flaky: tuple[str, list[int]]) -> None:
    host, seen = flaky
    clock = FakeClock()
    async with oci.new_session() as session:
        client = oci.RegistryClient(session, ModelName.parse(f"{host}/ns/m:t"), insecure=True, retry=RetryPolicy(sleep=clock.sleep))
        with pytest.raises(RegistryError, match="answered HTTP 503"):
            await client.request("GET", f"{client.base}/manifests/3", retry=False)
    assert seen == [503] and clock.waits == []


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_request_to_a_registry_that_never_answered_gives_up_after_three_quick_tries() -> None:
    clock = FakeClock()
    async with oci.new_session() as session:
        client = oci.RegistryClient(
            session, ModelName.parse(f"127.0.0.1:{_closed_port()}/ns/m:t"), insecure=True, retry=RetryPolicy(sleep=clock.sleep)
        )
        with pytest.raises(RegistryError, match="cannot reach registry 127.0.0.1:"):
            await client.request("GET", f"{client.base}/manifests/t")
        assert clock.waits == [0.25, 0.5]  # 3 tries, the backoff between them
        client._reached = True  # it answered once before: the whole budget
        clock.waits.clear()
        with pytest.raises(RegistryError, match="cannot reach registry 127.0.0.1:"):
            await client.request("GET", f"{client.base}/manifests/t")
        assert clock.waits == [0.25, 0.5, 1.0, 2.0, 4.0]


# ---- proxies that refuse -----------------------------------------------------------------------


class _RefusingProxy(socketserver.ThreadingTCPServer):
    """A loopback HTTP proxy that answers every request (CONNECT included) with ``status``."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, status: int) -> None:
        self.status = status
        self.requests: list[str] = []
        super().__init__(("127.0.0.1", 0), _RefusingHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _RefusingHandler(socketserver.StreamRequestHandler):
    server: _RefusingProxy

    def handle(self) -> None:
        line = self.rfile.readline(65536).decode("latin-1").strip()
        while self.rfile.readline(65536).strip():
            pass  # the headers
        self.server.requests.append(line)
        reason = {407: "Proxy Authentication Required", 403: "Forbidden"}[self.server.status]
        extra = 'Proxy-Authenticate: Basic realm="corp"\r\n' if self.server.status == 407 else ""
        self.wfile.write(f"HTTP/1.1 {self.server.status} {reason}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n".encode())


@pytest.fixture(params=[407, 403])
def refusing_proxy(request: pytest.FixtureRequest) -> Iterator[_RefusingProxy]:
    proxy = _RefusingProxy(request.param)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.shutdown()
        proxy.server_close()


def _fresh_store(tmp_path: Path) -> Store:
    return Store(tmp_path / "models")


async def test_pull_through_a_proxy_refusing_connect(refusing_proxy: _RefusingProxy, tmp_path: Path) -> None:
    store = _fresh_store(tmp_path)
    before = store_snapshot(store.root)
    # user:secret in the proxy URL must not appear in the error.
    proxy_url = refusing_proxy.url.replace("http://", "http://user:secret@")
    config = Config(proxies=Proxies(https=proxy_url))
    with pytest.raises(RegistryError) as caught:
        async for _ in pull_model(store, config, "registry.invalid/ns/model:tag"):
            pass
    message = caught.value.message
    assert caught.value.status == 502
    assert f"the proxy {refusing_proxy.url} refused the connection to registry registry.invalid" in message
    assert f"HTTP {refusing_proxy.status}" in message and "secret" not in message
    assert ("requires authentication" in message) is (refusing_proxy.status == 407)
    assert refusing_proxy.requests == ["CONNECT registry.invalid:443 HTTP/1.1"]  # refused: not tried again
    assert store_snapshot(store.root) == before


async def test_plain_http_pull_through_a_proxy_wanting_credentials(tmp_path: Path) -> None:
    proxy = _RefusingProxy(407)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(RegistryError, match=rf"the proxy {proxy.url} refused GET /v2/ns/model/manifests/tag to registry registry.invalid: HTTP 407"):
            async for _ in pull_model(_fresh_store(tmp_path), Config(proxies=Proxies(http=proxy.url)), "registry.invalid/ns/model:tag", insecure=True):
                pass
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert proxy.requests == ["GET http://registry.invalid/v2/ns/model/manifests/tag HTTP/1.1"]


async def test_pull_through_a_proxy_that_is_down(tmp_path: Path) -> None:
    proxy = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(RegistryError, match=rf"cannot reach the proxy {proxy} for registry registry.invalid") as caught:
        async for _ in pull_model(_fresh_store(tmp_path), Config(proxies=Proxies(https=proxy)), "registry.invalid/ns/model:tag"):
            pass
    assert caught.value.status == 502


def test_daemon_pull_through_a_proxy_refusing_connect(
    refusing_proxy: _RefusingProxy, daemon_factory: Callable[..., Daemon]
) -> None:
    d = daemon_factory({"HTTPS_PROXY": refusing_proxy.url, "NO_PROXY": ""})
    status, body = d.request("POST", "/api/pull", {"model": "registry.invalid/ns/model:tag", "stream": False})
    assert_api_error(status, body, 502, f"the proxy {refusing_proxy.url} refused the connection to registry registry.invalid")
    assert refusing_proxy.requests == ["CONNECT registry.invalid:443 HTTP/1.1"]
