"""cli/fast.py's argument forms, client.quick_json's reading of HTTP answers (against a real loopback socket)
(client_fast.py) and output.parse_epoch's timestamps (against datetime).

The end-to-end checks (real daemon, imports, same output as click) are in tests/test_cli_startup.py.
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ollamalike.cli.fast import parse
from ollamalike.cli.output import parse_epoch
from ollamalike.client_fast import dumps, loads, quick_json
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


@pytest.mark.parametrize(
    "text",
    ['{"models": [{"name": "qwen:latest", "size": 12, "details": {"families": null}}]}', '  [1, 2.5e3, -0, true]\n',
     '"\\u00e9\\ud83d\\ude00"', '{"a": NaN, "b": Infinity, "c": -Infinity}', "{}", '{"é": "ü"}', "123", "null", "\ufeff{}"],
)
def test_loads_is_json_loads(text: str) -> None:
    assert repr(loads(text.encode())) == repr(json.loads(text.encode()))


@pytest.mark.parametrize("raw", [b"", b"  ", b"{", b'{"a": 1} {', b"[1,]", b"nul", b'{"a": 1}x', b"\xff", b'"\xc3"'])
def test_loads_refuses_what_json_loads_refuses(raw: bytes) -> None:
    with pytest.raises(ValueError):
        json.loads(raw)
    with pytest.raises(ValueError):
        loads(raw)


@given(st.dictionaries(st.text(), st.one_of(st.text(), st.booleans()), max_size=4))
def test_dumps_is_json_dumps(body: dict[str, str | bool]) -> None:
    assert dumps(body) == json.dumps(body)


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


# --- output.parse_epoch: RFC 3339 by hand (no datetime import), checked against datetime itself -----------
def _reference(text: str) -> float | None:
    from datetime import datetime, timezone

    value = text.strip().replace("Z", "+00:00").replace("z", "+00:00")
    head, dot, rest = value.partition(".")
    if dot:
        digits = "".join(itertools.takewhile(str.isdigit, rest))
        value = f"{head}.{digits[:6].ljust(6, '0')}{rest[len(digits):]}"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).timestamp()


@pytest.mark.parametrize(
    "text",
    ["2025-01-01T11:58:00.123456789Z", "2025-01-01T04:00:00.5-07:00", "2025-01-01T13:00:00Z", "2024-02-29T00:00:00Z",
     "2023-02-29T00:00:00Z", "2025-13-01T00:00:00Z", "2025-04-31T00:00:00Z", "2025-01-01T24:00:00Z",
     "2025-01-01T23:59:59.999999+14:00", "0001-01-01T00:00:00Z", "2318-06-01T10:00:00.000000001+02:00",
     "1969-12-31T23:59:59Z", "2000-03-01 12:00:00", "2025-01-01T12:00", "  2025-01-01T12:00:00Z  ", "", "garbage",
     "2025-01-01", "2025-01-01T12:00:00+0530", "9999-12-31T23:59:59Z", "2025-01-01T12:00:00.Z",
     "2025-01-01T12:00:00Z junk", "2025-01-01T1:00:00Z", "２０２５-01-01T00:00:00Z", "2025-01-01T12:00:00+05"],
)
def test_parse_epoch_agrees_with_datetime(text: str) -> None:
    expected = _reference(text)
    got = parse_epoch(text)
    assert (got is None) == (expected is None), (text, got, expected)
    if expected is not None and got is not None:
        assert abs(got - expected) < 1e-5, text


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(timezone.utc)),
       st.integers(-14 * 60, 14 * 60), st.integers(0, 999_999_999))
def test_parse_epoch_reads_go_timestamps(moment: datetime, offset_minutes: int, nanos: int) -> None:
    local = moment.astimezone(timezone(timedelta(minutes=offset_minutes)))
    sign = "-" if offset_minutes < 0 else "+"
    zone = "Z" if offset_minutes == 0 else f"{sign}{abs(offset_minutes) // 60:02d}:{abs(offset_minutes) % 60:02d}"
    text = local.replace(tzinfo=None, microsecond=0).isoformat() + f".{nanos:09d}" + zone
    expected = moment.replace(microsecond=0).timestamp() + nanos / 1e9
    got = parse_epoch(text)
    assert got is not None and abs(got - expected) < 1e-5, text


def test_the_fast_flags_are_the_click_commands_own() -> None:
    """A flag the fast path takes means what it means to the click command (a new click flag is simply declined)."""
    from ollamalike.cli import fast
    from ollamalike.cli.models import list_models, show
    from ollamalike.cli.run import ps
    from ollamalike.cli.views import SHOW_FIELDS

    flags = {opt: p.name for p in show.params for opt in p.opts if opt.startswith("-")}
    assert {o: flags[o] for o in fast._SHOW_FLAGS} == {f"--{f}": "show_license" if f == "license" else f for f in SHOW_FIELDS}
    assert flags["-v"] == flags["--verbose"] == "verbose"
    assert [p.name for p in show.params if not p.opts[0].startswith("-")] == ["name"]
    assert [(p.name, p.required) for p in list_models.params] == [("prefix", False)] and ps.params == []
