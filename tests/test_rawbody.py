"""``registry.rawbody``: taking a plain-HTTP body over from aiohttp and pumping it off the socket.

Pump tests use a real socket pair; detach tests a real aiohttp server and client, over plain
HTTP (taken over), chunked (left to aiohttp) and TLS with a throwaway certificate (left too).
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from ollamalike.registry import rawbody
from tests.registry_server import free_port, self_signed_certificate


class Collector:
    """A sink that keeps what it is given (and releases each buffer at once, or never)."""

    def __init__(self, release: bool = True) -> None:
        self.release = release
        self.pieces: list[tuple[int, bytes]] = []

    def __call__(self, pos: int, data: memoryview, release: object) -> None:
        self.pieces.append((pos, bytes(data)))
        if self.release:
            release()  # type: ignore[operator]

    def joined(self, start: int) -> bytes:
        pos = start
        for at, data in self.pieces:
            assert at == pos, "pieces must arrive back to back"
            pos += len(data)
        return b"".join(d for _, d in self.pieces)


def feed(sock: socket.socket, data: bytes, close: bool = True) -> threading.Thread:
    def send() -> None:
        try:
            sock.sendall(data)
        except OSError:
            return  # the reading side closed first (a test that stops the pump early)
        if close:
            sock.close()

    t = threading.Thread(target=send, daemon=True)
    t.start()
    return t


def test_pump_reads_exactly_the_length_into_recycled_buffers() -> None:
    ours, theirs = socket.socketpair()
    body = os.urandom(3 * rawbody.BUFFER_SIZE + 12345)
    extra = b"next response, never ours"
    sender = feed(theirs, body + extra, close=False)
    pump = rawbody.Pump(ours, timeout=10)
    sink = Collector()
    try:
        pump.run(1000, len(body), sink)
        assert sink.joined(1000) == body
        assert all(len(d) <= rawbody.BUFFER_SIZE for _, d in sink.pieces)
        sender.join(10)
        ours.setblocking(False)
        assert ours.recv(100) == extra  # nothing past the body was read
    finally:
        pump.close()
        theirs.close()


def test_pump_reports_a_body_cut_short_as_a_retryable_payload_error() -> None:
    ours, theirs = socket.socketpair()
    feed(theirs, b"x" * 5000)
    pump = rawbody.Pump(ours, timeout=10)
    sink = Collector()
    try:
        with pytest.raises(aiohttp.ClientPayloadError, match="5000 bytes of the blob left"):
            pump.run(0, 10_000, sink)
        assert sink.joined(0) == b"x" * 5000  # what did arrive was handed over, so it resumes there
    finally:
        pump.close()


def test_pump_times_out_on_a_silent_server() -> None:
    ours, theirs = socket.socketpair()
    pump = rawbody.Pump(ours, timeout=0.2)
    try:
        start = time.monotonic()
        with pytest.raises(aiohttp.ClientPayloadError, match="timed out"):
            pump.run(0, 100, Collector())
        assert time.monotonic() - start < 5
    finally:
        pump.close()
        theirs.close()


@pytest.mark.parametrize("where", ["in recv", "waiting for a buffer"])
def test_stop_ends_a_blocked_pump_promptly(where: str) -> None:
    ours, theirs = socket.socketpair()
    if where == "waiting for a buffer":
        # The sink never gives buffers back, so the pump runs out of them and waits.
        feed(theirs, b"y" * (rawbody.BUFFERS + 2) * rawbody.BUFFER_SIZE, close=False)
    pump = rawbody.Pump(ours, timeout=60)
    sink = Collector(release=where == "in recv")
    errors: list[BaseException] = []

    def run() -> None:
        try:
            pump.run(0, 1 << 40, sink)
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    deadline = time.monotonic() + 10
    while where == "waiting for a buffer" and len(sink.pieces) < rawbody.BUFFERS and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)  # let it block (in recv, or on the empty buffer pool)
    assert t.is_alive()
    start = time.monotonic()
    pump.stop()
    t.join(5)
    assert not t.is_alive() and time.monotonic() - start < 3
    assert len(errors) == 1 and isinstance(errors[0], rawbody.Stopped), errors
    pump.close()
    theirs.close()


# ---- detach, against a real aiohttp server -----------------------------------------------------

BODY = os.urandom(3 * 1024 * 1024 + 7)


async def handler(request: web.Request) -> web.StreamResponse:
    if request.path == "/chunked":
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(0, len(BODY), 1 << 20):
            await resp.write(BODY[i : i + (1 << 20)])
        await resp.write_eof()
        return resp
    return web.Response(body=BODY)


async def serve(ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context).start()
    try:
        yield f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def plain_server() -> AsyncIterator[str]:
    async for url in serve():
        yield url


def pump_rest(head: bytes, sock: socket.socket, length: int) -> bytes:
    pump = rawbody.Pump(sock, timeout=10)
    sink = Collector()
    try:
        pump.run(len(head), length - len(head), sink)
    finally:
        pump.close()
    return head + sink.joined(len(head))


async def test_detach_takes_over_a_content_length_body(plain_server: str) -> None:
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        resp = await session.get(f"{plain_server}/blob")
        await resp.content.readexactly(100)  # aiohttp may also have buffered some more
        detached = rawbody.detach(resp)
        assert detached is not None
        head, sock = detached
        assert resp.closed  # the connection is ours now, never returned to aiohttp's pool
        assert pump_rest(head, sock, len(BODY) - 100) == BODY[100:]
        # The session still works: a fresh connection for the next request.
        async with session.get(f"{plain_server}/blob") as again:
            assert await again.read() == BODY


async def test_detach_leaves_a_chunked_body_to_aiohttp(plain_server: str) -> None:
    async with aiohttp.ClientSession() as session, session.get(f"{plain_server}/chunked") as resp:
        assert rawbody.detach(resp) is None
        assert await resp.read() == BODY  # untouched


@pytest.fixture(scope="module")
def tls_context(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    cert, key = self_signed_certificate(tmp_path_factory.mktemp("tls"))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


async def test_detach_leaves_a_tls_body_to_aiohttp(tls_context: ssl.SSLContext) -> None:
    async for url in serve(tls_context):
        async with aiohttp.ClientSession() as session, session.get(f"{url}/blob", ssl=False) as resp:
            assert resp.content_length == len(BODY)
            assert rawbody.detach(resp) is None
            assert await resp.read() == BODY

