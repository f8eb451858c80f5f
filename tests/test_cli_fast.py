"""cli/fast.py's argument forms and client.quick_json's reading of HTTP answers, against a real loopback socket.

The end-to-end checks (real daemon, imports, same output as click) are in tests/test_cli_startup.py.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest

from ollamalike.cli.fast import parse
from ollamalike.client import quick_json
from ollamalike.config_cli import cli_target
from tests.daemon import free_port


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["list"], ("list", "GET", "/api/tags", None, None, None)),
        (["ls", "qw"], ("list", "GET", "/api/tags", None, "qw", None)),
        (["ps"], ("ps", "GET", "/api/ps", None, None, None)),
        (["show", "m"], ("show", "POST", "/api/show", {"model": "m", "verbose": False}, None, None)),
        (["show", "-v", "m"], ("show", "POST", "/api/show", {"model": "m", "verbose": True}, None, None)),
        (["show", "m", "--license", "--license"], ("show", "POST", "/api/show", {"model": "m", "verbose": False}, None, "license")),
        (["show", "--template", "m", "--verbose"], ("show", "POST", "/api/show", {"model": "m", "verbose": True}, None, "template")),
    ],
)
def test_plain_forms_are_taken(args: list[str], expected: tuple[object, ...]) -> None:
    req = parse(args)
    assert req is not None
    assert (req.command, req.method, req.path, req.body, req.prefix, req.field) == expected


@pytest.mark.parametrize(
    "args",
    [[], ["--help"], ["-v"], ["list", "--help"], ["list", "a", "b"], ["ls", "-"], ["ps", "x"], ["ps", "-h"],
     ["show"], ["show", "a", "b"], ["show", "m", "--license", "--system"], ["show", "m", "--verbose=1"],
     ["show", "--", "m"], ["show", "m", "-h"], ["run", "m"], ["serve"], ["stop", "m"], ["rm", "m"]],
)
def test_anything_else_is_declined(args: list[str]) -> None:
    assert parse(args) is None


def test_cli_target_reads_what_load_config_reads(tmp_path: object) -> None:
    from ollamalike.client import client_for
    from ollamalike.config import load_config

    for env in [{}, {"OLLAMA_HOST": "0.0.0.0:9"}, {"OLLAMALIKE_HOST": "[::]:8"}, {"OLLAMALIKE_HOST": "http://h.example"},
                {"OLLAMALIKE_API_KEY": "a, b", "OLLAMALIKE_ADMIN_KEY": ""}, {"OLLAMALIKE_API_KEY": "a", "OLLAMALIKE_ADMIN_KEY": "z"}]:
        client = client_for(load_config(env))
        host, port, key = cli_target(env)
        assert (host, port, key) == (client._host, client._port, client._api_key), env


class _Server:
    """One-shot loopback server: records the request, answers with the given raw bytes, closes."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.request = b""
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            while b"\r\n\r\n" not in self.request:
                self.request += conn.recv(4096)
            head, _, body = self.request.partition(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            while len(body) < length:
                body += conn.recv(4096)
            self.request = head + b"\r\n\r\n" + body
            conn.sendall(self.answer)
        self.sock.close()


@pytest.fixture
def serve() -> Iterator[type[_Server]]:
    yield _Server


def _answer(status: str, body: bytes, headers: str = "") -> bytes:
    return f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{headers}\r\n".encode() + body


def test_quick_json_reads_a_content_length_answer_and_sends_the_client_headers(serve: type[_Server]) -> None:
    body = json.dumps({"models": [{"name": "é"}]}).encode()
    server = serve(_answer("200 OK", body + b"trailing junk", f"Content-Length: {len(body)}\r\n"))
    assert quick_json("127.0.0.1", server.port, "POST", "/api/show", {"model": "m"}, "k") == {"models": [{"name": "é"}]}
    server.thread.join(10)
    head, _, sent = server.request.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /api/show HTTP/1.1"
    assert f"Host: 127.0.0.1:{server.port}" in lines and "Authorization: Bearer k" in lines
    assert "Content-Type: application/json" in lines and json.loads(sent) == {"model": "m"}


def test_quick_json_reads_a_chunked_answer(serve: type[_Server]) -> None:
    body = json.dumps({"models": []}).encode()
    chunked = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(body[i:i + 5]), body[i:i + 5]) for i in range(0, len(body), 5))
    server = serve(_answer("200 OK", chunked + b"0\r\n\r\n", "Transfer-Encoding: chunked\r\n"))
    assert quick_json("127.0.0.1", server.port, "GET", "/api/tags") == {"models": []}


@pytest.mark.parametrize(
    "answer",
    [
        _answer("404 Not Found", b'{"error": "model \'m\' not found"}', "Content-Length: 31\r\n"),
        _answer("401 Unauthorized", b"{}", "Content-Length: 2\r\n"),
        _answer("200 OK", b'{"models": [', "Content-Length: 40\r\n"),  # cut short
        _answer("200 OK", b"not json"),
        _answer("200 OK", b"5\r\n{\"a\":\r\n", "Transfer-Encoding: chunked\r\n"),  # no last chunk
        _answer("200 OK", b"zz\r\n{}\r\n0\r\n\r\n", "Transfer-Encoding: chunked\r\n"),
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n",  # headers never end
        b"SSH-2.0-OpenSSH\r\n\r\n{}",
        b"",
    ],
)
def test_quick_json_declines_anything_but_a_whole_200(serve: type[_Server], answer: bytes) -> None:
    server = serve(answer)
    assert quick_json("127.0.0.1", server.port, "GET", "/api/tags") is None


def test_quick_json_declines_when_nothing_listens() -> None:
    assert quick_json("127.0.0.1", free_port(), "GET", "/api/tags") is None
