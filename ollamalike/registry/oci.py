"""A small OCI distribution API client: manifests, blob HEAD/GET/upload, auth challenges, retries.

Every request goes through ``request()``, which answers 401 challenges once (Bearer token or Basic
credentials, see ``auth``), retries transient failures (connection errors, 5xx, 429) with bounded
exponential backoff, and follows redirects itself so the registry's Authorization header never
travels to another host (blob storage behind a redirect gets a plain request).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp

from ollamalike.config import Proxies
from ollamalike.errors import RegistryError
from ollamalike.names import ModelName
from ollamalike.registry import auth
from ollamalike.registry.reading import read_bounded

log = logging.getLogger("ollamalike.registry")

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_REDIRECTS = 5
FIRST_CONTACT_ATTEMPTS = 3  # connection attempts before a registry that never answered is called unreachable
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# aiohttp pauses a socket once 2x this is buffered; its 64 KiB default pauses a fast blob stream
# constantly. Per connection, so a pull of 8 parts buffers at most 16 MiB.
READ_BUFFER = 1024 * 1024


@dataclass
class RetryPolicy:
    attempts: int = 6
    base_delay: float = 0.25
    max_delay: float = 8.0

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        if retry_after and retry_after.strip().isdigit():
            return min(float(retry_after), self.max_delay)
        return min(self.base_delay * (2**attempt), self.max_delay)


class RegistryNotFound(RegistryError):
    """The registry answered 404 (not: it could not be reached)."""


HEADER_READS = 3  # read timeouts a body-less request may take, connecting included, to get its headers
PUSH_READ_TIMEOUT = 120.0  # a registry may take a while to verify a large blob before it answers


def new_session(read_timeout: float = PUSH_READ_TIMEOUT) -> aiohttp.ClientSession:
    """A session for one pull or push. ``read_timeout``: the longest wait for any one read (headers
    or body); a pull passes its stall timeout (``config.pull_stall_timeout``)."""
    # No total timeout: a blob download may take hours. Stalls are caught by sock_read instead.
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=read_timeout)
    connector = aiohttp.TCPConnector(limit=32)
    return aiohttp.ClientSession(timeout=timeout, connector=connector, auto_decompress=False, read_bufsize=READ_BUFFER)


class RegistryClient:
    """One repository on one registry, e.g. ``127.0.0.1:5000/ns/model``."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        name: ModelName,
        *,
        insecure: bool = False,
        registry_auth: tuple[tuple[str, str, str], ...] = (),
        push: bool = False,
        retry: RetryPolicy | None = None,
        proxies: Proxies | None = None,
    ) -> None:
        self.session = session
        self.name = name
        self.scheme = "http" if insecure else "https"
        self.base = f"{self.scheme}://{name.host}/v2/{name.repository}"
        self.registry_auth = registry_auth
        self.credentials = auth.credentials_for(registry_auth, name.host, self.scheme)
        self.scope = f"repository:{name.repository}:{'pull,push' if push else 'pull'}"
        self.retry = retry or RetryPolicy()
        self.proxies = proxies or Proxies()
        self._authorization: str | None = None
        self._reached = False  # whether the registry has answered anything yet

    # ---- plumbing -------------------------------------------------------------------------------

    def _proxy(self, url: str) -> str | None:
        proxy = self.proxies.for_url(url)
        parts = urlsplit(proxy) if proxy else None
        if parts is not None and (parts.scheme not in ("http", "https") or not parts.hostname):
            raise RegistryError(f"cannot use the proxy {proxy} (HTTPS_PROXY/HTTP_PROXY): only http:// and https:// proxies work")
        return proxy

    @property
    def read_timeout(self) -> float | None:
        """The longest wait for one read: the stall timeout of a pull's session."""
        timeout: float | None = self.session.timeout.sock_read
        return timeout

    def _same_origin(self, url: str) -> bool:
        return auth.origin(url) == auth.origin(self.base)

    async def _answer_challenge(self, resp: aiohttp.ClientResponse, sent: str | None) -> bool:
        """Set up authorization from a 401 to a request sent with ``sent``; False when nothing is left to try."""
        if self._authorization != sent:
            # Another request renewed it meanwhile (parallel parts all meet an expired token at once).
            return True
        header = resp.headers.get("WWW-Authenticate", "")
        challenge = auth.parse_challenge(header) if header else None
        if challenge is None:
            return False
        if challenge.scheme == "bearer":
            realm = challenge.params.get("realm", "")
            # Our credentials for this registry go to a realm on its own origin only; a realm
            # elsewhere (an auth server) gets what is configured for that host, or nothing.
            credentials = (
                self.credentials if self._same_origin(realm) else auth.credentials_for_url(self.registry_auth, realm)
            )
            token = await auth.fetch_token(
                self.session, challenge, self.scope, credentials, proxy=self._proxy(realm)
            )
            new = f"Bearer {token}"
        elif challenge.scheme == "basic" and self.credentials is not None:
            if not auth.is_safe_for_secrets(self.base):
                raise RegistryError(f"refusing to send credentials over plain HTTP to {self.name.host}")
            new = auth.basic_header(*self.credentials)
        else:
            return False
        if new == sent:
            return False  # the same credentials again: they are refused
        self._authorization = new
        return True

    async def _send(self, method: str, url: str, headers: dict[str, str], body: Any) -> aiohttp.ClientResponse:
        return await self.session.request(
            method, url, headers=headers, data=body, allow_redirects=False, proxy=self._proxy(url)
        )

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        data: Callable[[], Any] | None = None,
        ok: tuple[int, ...] = (200,),
        follow: bool = True,
        retry: bool = True,
    ) -> aiohttp.ClientResponse:
        """Send a request with auth, retries and manual redirects; returns an open response in ``ok``.

        ``data`` is a factory so a body can be sent again after a retry or a 401. ``retry=False``
        for a request that must not simply be sent again (an upload chunk the registry may have
        partly taken): a failure raises ``RegistryError`` at once. The caller must release the
        returned response (``async with`` or ``release()``).
        """
        attempt = 0
        auth_tries = 0
        redirects = 0
        target = url
        while True:
            hdrs = dict(headers or {})
            sent = self._authorization
            if sent and self._same_origin(target):
                hdrs["Authorization"] = sent
            try:
                # A request without a body must have its answer's headers within a few read
                # timeouts in all: a server trickling them byte by byte would never trip sock_read.
                deadline = HEADER_READS * self.read_timeout if data is None and self.read_timeout else None
                resp = await asyncio.wait_for(
                    self._send(method, target, hdrs, data() if data else None), deadline
                )
            except aiohttp.ClientSSLError as e:
                hint = " (a plain-HTTP registry needs --insecure)" if self.scheme == "https" else ""
                raise RegistryError(f"TLS connection to registry {self.name.host} failed{hint}: {e}") from None
            except aiohttp.ClientConnectorDNSError:
                # Not transient in any useful sense: the name does not resolve (or we are offline).
                raise RegistryError(f"cannot reach registry {self.name.host}: host not found") from None
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError) as e:
                # A registry never reached yet is most likely down: say so soon. Once it has
                # answered, a failure is more likely a blip worth the whole retry budget.
                budget = self.retry.attempts if self._reached else min(self.retry.attempts, FIRST_CONTACT_ATTEMPTS)
                if not retry or attempt + 1 >= budget:
                    if isinstance(e, asyncio.TimeoutError) and not isinstance(e, aiohttp.ConnectionTimeoutError):
                        raise RegistryError(
                            f"registry {self.name.host} stalled: no answer to {method} {urlsplit(target).path} "
                            f"within {self.read_timeout or 0:g} s ({attempt + 1} tries)"
                        ) from None
                    raise RegistryError(f"cannot reach registry {self.name.host}: {e or type(e).__name__}") from None
                await asyncio.sleep(self.retry.delay(attempt))
                attempt += 1
                continue
            self._reached = True
            if resp.status in ok:
                return resp
            resp.release()
            if resp.status == 401 and self._same_origin(target) and auth_tries < 2:
                auth_tries += 1
                if await self._answer_challenge(resp, sent):
                    continue
                raise RegistryError(f"registry {self.name.host}: unauthorized (set OLLAMALIKE_REGISTRY_AUTH)")
            if follow and resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                redirects += 1
                if redirects > MAX_REDIRECTS:
                    raise RegistryError(f"registry {self.name.host}: too many redirects")
                target = urljoin(target, resp.headers["Location"])
                if resp.status == 303:
                    method = "GET"
                continue
            if retry and resp.status in TRANSIENT_STATUS and attempt + 1 < self.retry.attempts:
                await asyncio.sleep(self.retry.delay(attempt, resp.headers.get("Retry-After")))
                attempt += 1
                continue
            raise self._status_error(method, target, resp.status)

    def _status_error(self, method: str, url: str, status: int) -> RegistryError:
        what = urlsplit(url).path
        if status == 404:
            return RegistryNotFound(f"registry {self.name.host}: {what} not found")
        if status in (401, 403):
            return RegistryError(f"registry {self.name.host}: access denied to {self.name.repository}")
        return RegistryError(f"registry {self.name.host}: {method} {what} answered HTTP {status}")

    # ---- API ------------------------------------------------------------------------------------

    async def get_manifest(self, reference: str) -> tuple[bytes, str]:
        """The manifest bytes, exactly as served, and their content type."""
        headers = {"Accept": f"{MANIFEST_V2}, {OCI_MANIFEST}"}
        try:
            resp = await self.request("GET", f"{self.base}/manifests/{reference}", headers=headers)
        except RegistryError as e:
            if isinstance(e, RegistryNotFound):
                raise RegistryError(f"pull model manifest: file does not exist: {self.name.display}") from None
            raise
        async with resp:
            body = await read_bounded(resp, MAX_MANIFEST_BYTES, "manifest", self.name.host, self.read_timeout)
            return body, resp.headers.get("Content-Type", MANIFEST_V2)

    async def has_blob(self, digest: str) -> bool:
        try:
            resp = await self.request("HEAD", f"{self.base}/blobs/{digest}", ok=(200, 404))
        except RegistryError:
            return False
        resp.release()
        return resp.status == 200

    async def open_blob(self, digest: str, start: int = 0, end: int | None = None) -> aiohttp.ClientResponse:
        """GET a blob, from ``start`` to ``end`` (exclusive) when given; 200 or 206 response."""
        headers = {}
        if start or end is not None:
            headers["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        return await self.request("GET", f"{self.base}/blobs/{digest}", headers=headers, ok=(200, 206))

    def trusted_location(self, base: str, location: str | None) -> str:
        """An upload ``Location`` resolved against ``base``; it must be this registry or safe for secrets."""
        if not location:
            raise RegistryError(f"registry {self.name.host}: upload session has no Location")
        url = urljoin(base, location)
        if not self._same_origin(url) and not auth.is_safe_for_secrets(url):
            raise RegistryError(f"registry {self.name.host}: upload location {url} is not trusted")
        return url

    async def put_manifest(self, reference: str, body: bytes, media_type: str) -> None:
        resp = await self.request(
            "PUT",
            f"{self.base}/manifests/{reference}",
            headers={"Content-Type": media_type},
            data=lambda: body,
            ok=(200, 201, 202),
            follow=False,
        )
        resp.release()
