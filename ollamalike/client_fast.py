"""The HTTP of the CLI's fast path (cli/fast.py): one request on a raw socket, its JSON by the C codec.

``quick_json`` answers the JSON of a whole 200, or None for anything else, and None means "ask
``client.Client``" (which starts the daemon, reads error messages and reports failures the usual way).
What it imports is the point (issue 20): ``client.Client`` costs http.client (email, ssl, urllib) and
``json`` costs ``re``, ``enum`` and ``functools`` with its compiled patterns, together more than a third of
``ollamalike list``'s time on this 2-core machine. Here: the C modules under ``socket`` and ``json``, with
the standard modules as a fallback for interpreters without them.
"""

from __future__ import annotations

try:
    # The C modules under socket.py and json: socket.py's enum classes and selectors, and json's re,
    # enum and functools, cost several milliseconds to import (4-5 times that on a loaded machine).
    import _json
    import _socket as sockets
except ImportError:  # an interpreter without them (not CPython)
    _json = None  # type: ignore[assignment]
    import socket as sockets  # type: ignore[no-redef]

# Not typing.TYPE_CHECKING: importing typing would cost the fast path ~2 ms (annotations are strings).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

JSONBody = dict[str, str | bool]  # the flat bodies the fast path sends


class _Decoding:
    """What ``_json.make_scanner`` reads from a ``json.JSONDecoder``: json.loads's defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}.__getitem__


# typeshed types the context as a make_scanner; the C code reads only the attributes above from it.
_scan: Callable[[str, int], tuple[object, int]] | None = (
    _json.make_scanner(_Decoding()) if _json is not None else None  # type: ignore[arg-type]
)


def loads(data: bytes) -> object:
    """``json.loads`` for UTF-8 bytes (a BOM allowed), through the C scanner; ValueError for anything that is
    not one JSON value."""
    if _scan is None:
        import json

        value: object = json.loads(data)
        return value
    # The BOM by hand: the utf-8-sig codec would be one more import. A UnicodeDecodeError is a ValueError.
    text = data.removeprefix(b"\xef\xbb\xbf").decode("utf-8").strip(" \t\n\r")
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        raise ValueError("no JSON value") from None
    if end != len(text):
        raise ValueError("extra data after the JSON value")
    return value


def dumps(body: JSONBody) -> str:
    """``json.dumps(body)``, character for character, for the flat bodies the fast path sends."""
    if _json is None:
        import json

        return json.dumps(body)
    quote = _json.encode_basestring_ascii
    items = (f"{quote(k)}: {quote(v) if isinstance(v, str) else 'true' if v else 'false'}" for k, v in body.items())
    return "{" + ", ".join(items) + "}"


def quick_json(
    host: str, port: int, method: str, path: str, body: JSONBody | None = None, api_key: str | None = None
) -> object | None:
    """One plain-HTTP request and its JSON answer, or None when anything is not a whole 200 with a JSON body
    (nothing listening, an error status, an answer cut short or not JSON). The headers are those
    ``client.Client`` sends (http.client's Host and Accept-Encoding, its User-Agent, Accept and key), plus
    ``Connection: close``: the daemon cannot tell the two apart."""
    payload = b"" if body is None else dumps(body).encode()
    name = f"[{host}]" if ":" in host else host
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: {name}" if port == 80 else f"Host: {name}:{port}",
        "User-Agent: ollamalike-cli",
        "Accept-Encoding: identity",
        "Accept: application/json",
        "Connection: close",
    ]
    if api_key:
        lines.append(f"Authorization: Bearer {api_key}")
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
    try:
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload
        raw = _exchange(host, port, request)
    except (OSError, UnicodeError):
        return None
    if raw is None:
        return None
    content = _body_of_200(raw)
    if content is None:
        return None
    try:
        return loads(content)
    except ValueError:
        return None


def _exchange(host: str, port: int, request: bytes) -> bytes | None:
    """Send ``request`` and read the answer to its end; None if nothing could be connected to."""
    # An ASCII host as bytes (getaddrinfo takes either): for a str it loads the idna codec (~1 ms).
    target = host.encode("ascii") if host.isascii() else host
    for family, kind, proto, _, address in sockets.getaddrinfo(target, port, 0, sockets.SOCK_STREAM):
        sock = sockets.socket(family, kind, proto)
        try:
            # client.Client.is_running gives a daemon 2 s to answer before ensure_daemon calls it down.
            sock.settimeout(2.0)
            sock.connect(address)
        except OSError:
            sock.close()
            continue
        try:
            sock.settimeout(None)  # as Client.json: no limit on the answer itself
            sock.sendall(request)
            chunks: list[bytes] = []
            while data := sock.recv(1 << 16):
                chunks.append(data)
            return b"".join(chunks)
        finally:
            sock.close()
    return None


def _body_of_200(raw: bytes) -> bytes | None:
    """The body of a whole HTTP/1.x 200 answer (Content-Length or chunked), else None."""
    head, sep, rest = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.split(b"\r\n")
    status = status_line.split(None, 2)
    if not sep or len(status) < 2 or not status[0].startswith(b"HTTP/1.") or status[1] != b"200":
        return None
    headers = {}
    for line in header_lines:
        key, _, value = line.partition(b":")
        headers[key.strip().lower()] = value.strip().lower()
    if b"chunked" in headers.get(b"transfer-encoding", b""):
        return _dechunk(rest)
    length = headers.get(b"content-length")
    if length is None:
        return rest  # to the end of the connection
    if not length.isdigit() or len(rest) < int(length):
        return None  # cut short
    return rest[: int(length)]


def _dechunk(data: bytes) -> bytes | None:
    """A chunked transfer-encoded body, or None if it is malformed or cut short."""
    out: list[bytes] = []
    pos = 0
    while True:
        end = data.find(b"\r\n", pos)
        if end < 0:
            return None
        try:
            size = int(data[pos:end].split(b";", 1)[0], 16)
        except ValueError:
            return None
        if size < 0:
            return None
        if size == 0:
            return b"".join(out)
        start = end + 2
        if len(data) < start + size + 2:
            return None
        out.append(data[start : start + size])
        pos = start + size + 2
