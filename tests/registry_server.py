"""Test helpers for registry tests: a real Debian ``docker-registry`` and small aiohttp fronts for it.

``DockerRegistry`` runs ``/usr/bin/docker-registry`` on 127.0.0.1 with a temporary storage
directory. ``RegistryProxy`` sits in front of it and can misbehave on purpose: flip bytes of a
blob, ignore Range, redirect blob GETs elsewhere, fail the first requests with 503, throttle,
or demand Bearer tokens from its own token endpoint (the Docker token-auth flow).
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import ClientSession, web

REGISTRY_BIN = "/usr/bin/docker-registry"
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host", "content-length"}


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate and key for 127.0.0.1 (made with the openssl command)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return cert, key


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def registry_available() -> bool:
    return shutil.which(REGISTRY_BIN) is not None or Path(REGISTRY_BIN).exists()


class DockerRegistry:
    """A real OCI distribution registry on a free loopback port."""

    def __init__(self, root: Path, tls: tuple[Path, Path] | None = None) -> None:
        self.root = root
        self.port = free_port()
        self.tls = tls  # (certificate, key): serve HTTPS
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def start(self, timeout: float = 30.0) -> None:
        storage = self.root / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        config = self.root / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n"
        )
        if self.tls:
            config.write_text(
                config.read_text() + f"  tls:\n    certificate: {self.tls[0]}\n    key: {self.tls[1]}\n"
            )
        context = ssl.create_default_context(cafile=str(self.tls[0])) if self.tls else None
        log = (self.root / "registry.log").open("wb")
        self.proc = subprocess.Popen([REGISTRY_BIN, "serve", str(config)], stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {(self.root / 'registry.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/v2/", timeout=1, context=context) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("docker-registry did not become ready")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class ProxyBehaviour:
    flip_digest: str | None = None  # flip a byte in this blob's body
    oversize_digest: str | None = None  # send extra bytes after this blob
    ignore_range: bool = False
    redirect_blobs: bool = False  # 307 blob GETs to /storage/... on the same proxy
    redirect_host: str | None = None  # ...named by this host instead (another origin, e.g. "localhost")
    basic_user: str | None = None  # when set, demand HTTP Basic credentials
    basic_password: str = ""
    fail_first: int = 0  # answer this many requests with 503 first
    drop_after: int = 0  # cut the first blob GET's connection after this many body bytes
    throttle_bytes_per_s: int = 0
    chunked: bool = False  # send bodies without Content-Length (so a pull reads them through aiohttp)
    token_user: str | None = None  # when set, demand Bearer tokens from /token
    token_password: str = ""
    realm: str | None = None  # override the realm announced in WWW-Authenticate
    token_uses: int = 0  # when set, a token expires after this many requests (short-lived tokens)
    fail_patch: int = 0  # the Nth upload PATCH fails with a 500...
    fail_patch_passes: float = 0.5  # ...after passing on this share of its bytes (0: none landed)
    patch_ranges: list[str] = field(default_factory=list)  # Content-Range of every upload PATCH
    hold_patch: int = 0  # never read (nor pass on) the Nth upload PATCH: a client stuck mid-upload
    release_hold: asyncio.Event = field(default_factory=asyncio.Event)
    patches_seen: int = 0
    requests: list[tuple[str, str, str]] = field(default_factory=list)  # (method, path, Range)
    storage_authorization: list[str] = field(default_factory=list)  # Authorization seen by /storage
    tokens_issued: int = 0
    body_bytes_sent: int = 0
    blob_gets_open: int = 0  # blob GETs being answered right now...
    blob_gets_peak: int = 0  # ...and the most at once (parallel ranged parts)


class RegistryProxy:
    """An aiohttp front for ``upstream`` that misbehaves as ``behaviour`` says.

    It also works as an HTTP forward proxy (clients send it absolute URLs) that sends every
    request to ``upstream``, whatever host the client named: a made-up name then stands for the
    registry, and only a client that really went through the proxy can reach it.
    """

    def __init__(self, upstream: str, behaviour: ProxyBehaviour | None = None) -> None:
        self.upstream = upstream
        self.b = behaviour or ProxyBehaviour()
        self.port = free_port()
        self._token = secrets.token_hex(16)
        self._token_used = 0
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application(client_max_size=1 << 34)
        app.router.add_get("/token", self._token_endpoint)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._session = ClientSession(auto_decompress=False)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _token_endpoint(self, request: web.Request) -> web.Response:
        expected = "Basic " + base64.b64encode(f"{self.b.token_user}:{self.b.token_password}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return web.json_response({"errors": [{"code": "UNAUTHORIZED"}]}, status=401)
        self.b.tokens_issued += 1
        return web.json_response({"token": self._token})

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        blob_get = request.method == "GET" and "/blobs/sha256:" in request.path
        if blob_get:
            self.b.blob_gets_open += 1
            self.b.blob_gets_peak = max(self.b.blob_gets_peak, self.b.blob_gets_open)
        try:
            return await self._forward_inner(request)
        except ConnectionResetError:
            # The client under test hung up on purpose (it rejected what we sent).
            return web.Response(status=499)
        finally:
            if blob_get:
                self.b.blob_gets_open -= 1

    async def _forward_inner(self, request: web.Request) -> web.StreamResponse:
        b = self.b
        path = request.path
        b.requests.append((request.method, path, request.headers.get("Range", "")))
        if b.fail_first > 0:
            b.fail_first -= 1
            return web.Response(status=503, text="try again")
        needs_token = b.token_user is not None and path.startswith("/v2/") and path != "/v2/"
        if needs_token and request.headers.get("Authorization") != f"Bearer {self._token}":
            realm = b.realm or f"http://{self.host}/token"
            header = f'Bearer realm="{realm}",service="test-registry",scope="repository:x:pull"'
            return web.json_response({"errors": []}, status=401, headers={"WWW-Authenticate": header})
        if needs_token and b.token_uses:
            self._token_used += 1
            if self._token_used >= b.token_uses:
                self._token, self._token_used = secrets.token_hex(16), 0  # the next request needs a new one
        if b.basic_user is not None and path.startswith("/v2/") and path != "/v2/":
            expected = "Basic " + base64.b64encode(f"{b.basic_user}:{b.basic_password}".encode()).decode()
            if request.headers.get("Authorization") != expected:
                return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="test"'})
        if path.startswith("/storage/"):
            b.storage_authorization.append(request.headers.get("Authorization", ""))
            path = path[len("/storage") :]
        elif b.redirect_blobs and request.method == "GET" and "/blobs/sha256:" in path:
            origin = f"http://{b.redirect_host}:{self.port}" if b.redirect_host else ""
            return web.Response(status=307, headers={"Location": f"{origin}/storage{path}"})
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS | {"authorization"}}
        if b.ignore_range:
            headers.pop("Range", None)
        if request.method == "PATCH":
            b.patches_seen += 1
            if b.patches_seen == b.hold_patch:
                # Reading nothing, aiohttp stops reading the socket, so it cannot see the client go:
                # the test says when to let go.
                await b.release_hold.wait()
                return web.Response(status=499)
        data = await request.read() if request.can_read_body else None
        assert self._session is not None
        url = self.upstream + path + (f"?{request.query_string}" if request.query_string else "")
        if request.method == "PATCH":
            b.patch_ranges.append(request.headers.get("Content-Range", ""))
            if len(b.patch_ranges) == b.fail_patch and data:
                start = int(request.headers["Content-Range"].split("-")[0])
                landed = int(len(data) * b.fail_patch_passes)
                if landed:
                    headers["Content-Range"] = f"{start}-{start + landed - 1}"
                    async with self._session.request("PATCH", url, headers=headers, data=data[:landed]) as up:
                        await up.read()
                return web.Response(status=500, text="lost midway")
        async with self._session.request(
            request.method, url, headers=headers, data=data, allow_redirects=False
        ) as up:
            out_headers = {k: v for k, v in up.headers.items() if k.lower() not in HOP_HEADERS}
            if out_headers.get("Location", "").startswith(self.upstream):
                # Keep the client on this proxy (the registry names itself in upload locations), or,
                # used as a forward proxy, on the host name the client asked for.
                origin = f"http://{request.headers.get('Host') or self.host}"
                out_headers["Location"] = origin + out_headers["Location"][len(self.upstream) :]
            digest = path.rsplit("/", 1)[-1]
            is_blob_get = request.method == "GET" and "/blobs/" in path
            oversize = is_blob_get and digest == b.oversize_digest
            if oversize:
                out_headers.pop("Content-Length", None)
            resp = web.StreamResponse(status=up.status, headers=out_headers)
            if not oversize and not b.chunked and up.content_length is not None:
                resp.content_length = up.content_length
            await resp.prepare(request)
            flipped = False
            sent = 0
            async for chunk in up.content.iter_chunked(256 * 1024):
                if is_blob_get and digest == b.flip_digest and not flipped and chunk:
                    chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
                    flipped = True
                if is_blob_get and b.drop_after and sent + len(chunk) > b.drop_after:
                    keep = max(1, b.drop_after - sent)
                    b.drop_after = 0
                    await resp.write(chunk[:keep])
                    assert request.transport is not None
                    request.transport.close()  # a lost connection, mid-body
                    return resp
                sent += len(chunk)
                b.body_bytes_sent += len(chunk)
                await resp.write(chunk)
                if b.throttle_bytes_per_s:
                    await asyncio.sleep(len(chunk) / b.throttle_bytes_per_s)
            if oversize:
                await resp.write(b"\0" * 4096)
            await resp.write_eof()
            return resp


def make_model(store: object, name: str, model_bytes: bytes | None = None, model_file: Path | None = None) -> str:
    """Put a one-layer model straight into a store (config + model layer + manifest); its manifest digest."""
    from ollamalike.store.manifest import (
        CONFIG_MEDIA_TYPE,
        MEDIA_MODEL,
        Descriptor,
        build_config,
        build_manifest,
    )

    if model_file is not None:
        digest, size = store.add_blob_file(model_file)  # type: ignore[attr-defined]
    else:
        assert model_bytes is not None
        digest, size = store.add_blob_bytes(model_bytes)  # type: ignore[attr-defined]
    config = build_config(model_family="llama", file_type="F32", diff_ids=[digest])
    config_digest, config_size = store.add_blob_bytes(config)  # type: ignore[attr-defined]
    manifest = build_manifest(
        Descriptor(CONFIG_MEDIA_TYPE, config_digest, config_size), [Descriptor(MEDIA_MODEL, digest, size)]
    )
    return str(store.put_manifest(name, manifest))  # type: ignore[attr-defined]


class ThreadedServer:
    """An aiohttp app on its own event loop in a thread, for tests that block (CLI, urllib)."""

    def __init__(self, app: web.Application) -> None:
        import threading

        self.app = app
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()

        async def up() -> None:
            self._runner = web.AppRunner(self.app, access_log=None)
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

        asyncio.run_coroutine_threadsafe(up(), self.loop).result(30)

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(30)


def fake_hub(
    repos: dict[str, dict[str, bytes]], lfs_min: int = 1024, seen_auth: list[str] | None = None
) -> web.Application:
    """The few Hugging Face Hub endpoints huggingface_hub uses to list and download files.

    ``repos`` maps ``user/repo`` to {path: content}; files of ``lfs_min`` bytes or more are
    described as LFS files (sha256 oid, X-Linked-Etag/X-Linked-Size), as the Hub does.
    """
    import hashlib

    commit = "0123456789abcdef0123456789abcdef01234567"
    app = web.Application()

    def entry(path: str, data: bytes) -> dict[str, object]:
        git_oid = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        item: dict[str, object] = {"type": "file", "path": path, "size": len(data), "oid": git_oid}
        if len(data) >= lfs_min:
            item["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 130}
        return item

    def repo_or_404(request: web.Request) -> dict[str, bytes]:
        if seen_auth is not None:
            seen_auth.append(request.headers.get("Authorization", ""))
        repo = f"{request.match_info['user']}/{request.match_info['repo']}"
        if repo not in repos:
            raise web.HTTPNotFound(headers={"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"})
        return repos[repo]

    async def tree(request: web.Request) -> web.Response:
        files = repo_or_404(request)
        return web.json_response([entry(p, d) for p, d in sorted(files.items())])

    async def paths_info(request: web.Request) -> web.Response:
        files = repo_or_404(request)
        form = await request.post()
        wanted = [str(p) for p in form.getall("paths", [])]
        return web.json_response([entry(p, files[p]) for p in wanted if p in files])

    async def resolve(request: web.Request) -> web.StreamResponse:
        files = repo_or_404(request)
        path = request.match_info["path"]
        if path not in files:
            raise web.HTTPNotFound(headers={"X-Error-Code": "EntryNotFound", "X-Error-Message": "Entry not found"})
        data = files[path]
        headers = {"X-Repo-Commit": commit, "Accept-Ranges": "bytes"}
        if len(data) >= lfs_min:
            sha = hashlib.sha256(data).hexdigest()
            headers.update({"X-Linked-Etag": f'"{sha}"', "ETag": f'"{sha}"', "X-Linked-Size": str(len(data))})
        else:
            headers["ETag"] = '"' + hashlib.sha1(data).hexdigest() + '"'
        start = 0
        rng = request.headers.get("Range", "")
        status = 200
        if rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[6:-1])
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        if request.method == "HEAD":
            headers["Content-Length"] = str(len(data))
            return web.Response(status=200, headers=headers)
        return web.Response(status=status, body=data[start:], headers=headers)

    app.router.add_get("/api/models/{user}/{repo}/tree/{rev}", tree)
    app.router.add_post("/api/models/{user}/{repo}/paths-info/{rev}", paths_info)
    app.router.add_route("HEAD", "/{user}/{repo}/resolve/{rev}/{path:.+}", resolve)
    app.router.add_get("/{user}/{repo}/resolve/{rev}/{path:.+}", resolve, allow_head=False)
    return app
