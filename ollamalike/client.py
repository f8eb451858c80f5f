"""A small HTTP client for the CLI (stdlib only, fast to import) and daemon autostart.

``Client`` speaks the native API: JSON calls, NDJSON streams and blob uploads. HTTP errors become
the matching ``OllamalikeError`` subclass carrying the server's message, so the CLI prints them as
one ``Error: ...`` line. ``ensure_daemon`` starts ``ollamalike serve`` in the background when
nothing answers on a local address.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from ollamalike.config import Config
from ollamalike.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    InternalError,
    NotFound,
    OllamalikeError,
    Overloaded,
    PayloadTooLarge,
    RegistryError,
    Unauthorized,
)

_STATUS_ERRORS: dict[int, type[OllamalikeError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    502: RegistryError,
    503: Overloaded,
}
_CHUNK = 1024 * 1024
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "0.0.0.0", "::", "")


class ConnectionFailed(OllamalikeError):
    """Nothing answered at the server address."""

    status = 503


def error_for(status: int, body: bytes) -> OllamalikeError:
    """The ``OllamalikeError`` a server's error response stands for, with its message."""
    message = ""
    try:
        data = json.loads(body)
        if isinstance(data, dict):
            err = data.get("error")
            if isinstance(err, dict):
                err = err.get("message")
            message = str(err) if err else ""
    except ValueError:
        message = body.decode("utf-8", "replace").strip()
    if not message:
        message = f"server answered HTTP {status}"
    cls = _STATUS_ERRORS.get(status, InternalError)
    return cls(message)


class Client:
    def __init__(self, base_url: str, api_key: str | None = None, timeout: float | None = None) -> None:
        parts = urlsplit(base_url if "://" in base_url else f"http://{base_url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BadRequest(f"invalid server address {base_url!r}")
        self.base_url = f"{parts.scheme}://{parts.netloc}"
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._api_key = api_key
        self.timeout = timeout

    # -- plumbing -----------------------------------------------------------------------------
    def _connection(self, timeout: float | None) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout)
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"User-Agent": "ollamalike-cli", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        headers.update(extra or {})
        return headers

    def _send(
        self,
        method: str,
        path: str,
        body: bytes | Iterable[bytes] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        conn = self._connection(self.timeout if timeout is None else timeout)
        try:
            conn.request(method, path, body=body, headers=self._headers(headers))
            return conn, conn.getresponse()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise ConnectionFailed(f"could not connect to ollamalike server at {self.base_url}: {_reason(e)}") from None

    def request(self, method: str, path: str, body: object = None, timeout: float | None = None) -> tuple[int, bytes]:
        """Raw request: (status, body). Connection failures raise ``ConnectionFailed``."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn, resp = self._send(method, path, data, headers, timeout)
        try:
            return resp.status, resp.read()
        finally:
            conn.close()

    # -- API ----------------------------------------------------------------------------------
    def json(self, method: str, path: str, body: object = None) -> Any:
        status, raw = self.request(method, path, body)
        if status >= 400:
            raise error_for(status, raw)
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except ValueError:
            raise InternalError(f"invalid JSON from server for {method} {path}") from None

    def stream(self, method: str, path: str, body: object = None) -> Iterator[dict[str, Any]]:
        """Yield each NDJSON object; a line carrying ``error`` raises it."""
        data = None if body is None else json.dumps(body).encode()
        conn, resp = self._send(method, path, data, {"Content-Type": "application/json"})
        try:
            if resp.status >= 400:
                raise error_for(resp.status, resp.read())
            while True:
                try:
                    line = resp.readline()
                except (OSError, http.client.HTTPException) as e:
                    raise ConnectionFailed(f"lost connection to ollamalike server at {self.base_url}: {_reason(e)}") from None
                if not line:
                    break
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except ValueError:
                    raise InternalError(f"invalid JSON line from server: {line[:200]!r}") from None
                if isinstance(obj, dict) and obj.get("error"):
                    raise error_for(500 if resp.status < 400 else resp.status, line)
                yield obj
        finally:
            conn.close()

    def is_running(self, timeout: float = 2.0) -> bool:
        try:
            status, _ = self.request("GET", "/", timeout=timeout)
        except ConnectionFailed:
            return False
        return status == 200

    def has_blob(self, digest: str) -> bool:
        status, raw = self.request("HEAD", f"/api/blobs/{quote(digest)}")
        if status == 200:
            return True
        if status == 404:
            return False
        raise error_for(status, raw)

    def upload_blob(self, path: str | Path, progress: Callable[[int, int], None] | None = None) -> str:
        """Upload a file as a blob unless the server has it; returns ``sha256:<hex>``."""
        file = Path(path)
        try:
            size = file.stat().st_size
            digest = "sha256:" + file_sha256(file)
        except OSError as e:
            raise BadRequest(f"cannot read {file}: {e.strerror}") from None
        if self.has_blob(digest):
            if progress:
                progress(size, size)
            return digest

        def chunks() -> Iterator[bytes]:
            done = 0
            with file.open("rb") as fh:
                while block := fh.read(_CHUNK):
                    done += len(block)
                    yield block
                    if progress:
                        progress(done, size)

        headers = {"Content-Length": str(size), "Content-Type": "application/octet-stream"}
        conn, resp = self._send("POST", f"/api/blobs/{quote(digest)}", chunks(), headers)
        try:
            raw = resp.read()
            if resp.status >= 400:
                raise error_for(resp.status, raw)
        finally:
            conn.close()
        return digest


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def _reason(e: BaseException) -> str:
    if isinstance(e, ConnectionRefusedError):
        return "connection refused (is `ollamalike serve` running?)"
    if isinstance(e, TimeoutError):
        return "timed out"
    return getattr(e, "strerror", None) or str(e) or type(e).__name__


def client_for(config: Config) -> Client:
    # The admin key is accepted everywhere, so a CLI that has it can also create, pull and delete.
    keys = config.admin_keys or config.api_keys
    return Client(config.base_url, api_key=keys[0] if keys else None)


def ensure_daemon(config: Config, timeout: float = 60.0) -> Client:
    """A client for a daemon that answers, starting ``ollamalike serve`` if the address is local."""
    client = client_for(config)
    if client.is_running():
        return client
    if config.host not in LOCAL_HOSTS:
        raise ConnectionFailed(f"could not connect to ollamalike server at {client.base_url}")
    config.log_dir.mkdir(parents=True, exist_ok=True)
    log_path = config.log_dir / "server.log"
    with log_path.open("ab") as log:
        # A new session detaches the daemon from the terminal: Ctrl-C in the CLI does not stop it.
        proc = subprocess.Popen(
            [sys.executable, "-m", "ollamalike", "serve"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
        )
    deadline = time.monotonic() + timeout
    delay = 0.05
    while time.monotonic() < deadline:
        if client.is_running(timeout=1.0):
            return client
        code = proc.poll()
        if code is not None:
            # Another CLI may have won the race for the port: its daemon is as good as ours.
            if client.is_running(timeout=1.0):
                return client
            raise ConnectionFailed(f"ollamalike server exited with status {code} while starting; see {log_path}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)
    raise ConnectionFailed(f"ollamalike server did not become ready within {timeout:.0f}s; see {log_path}")
