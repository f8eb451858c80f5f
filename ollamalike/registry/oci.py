"""A small OCI distribution API client: manifests, blob HEAD/GET/upload, auth challenges, retries.

Every request goes through ``request()``, which answers 401 challenges once (Bearer token or Basic
credentials, see ``auth``), retries transient failures (connection errors, 5xx, 429) as the
``retry.RetryPolicy`` says, maps failures to a ``RegistryError`` naming the registry (or the proxy
in the way), and follows redirects itself so the registry's Authorization header never
travels to another host (blob storage behind a redirect gets a plain request).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from urllib.parse import urljoin, urlsplit

import aiohttp

from ollamalike.config import Proxies, is_loopback_host
from ollamalike.errors import RegistryError
from ollamalike.names import ModelName
from ollamalike.registry import auth
from ollamalike.registry.reading import read_bounded
from ollamalike.registry.retry import RetryPolicy, Tries
from ollamalike.registry.retry import is_transient as retryable

__all__ = ["RegistryClient", "RegistryNotFound", "RetryPolicy", "is_loopback_registry", "new_session"]

log = logging.getLogger("ollamalike.registry")

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_REDIRECTS = 5
# aiohttp pauses a socket once 2x this is buffered; its 64 KiB default pauses a fast blob stream
# constantly. Per connection, so a pull of 8 parts buffers at most 16 MiB.
READ_BUFFER = 1024 * 1024


# What a request sends: made again for each try, since a stream can be read only once.
BodyFactory = Callable[[], bytes | AsyncIterator[bytes]]


def _redact(url: str | None) -> str:
    """A proxy URL without the credentials it may carry."""
    parts = urlsplit(url or "")
    if parts.hostname is None:
        return url or "(none)"
    host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    return f"{parts.scheme}://{host}"


def is_loopback_registry(host: str) -> bool:
    """``127.0.0.1:5000``, ``[::1]:5000``, ``::1`` or ``localhost``: a registry on this machine."""
    bare_ipv6 = host.count(":") > 1 and not host.startswith("[")
    return is_loopback_host(host if bare_ipv6 else urlsplit("//" + host).hostname)


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

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        data: BodyFactory | None = None,
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
        tries = Tries(self.retry)
        auth_tries = redirects = 0
        while True:
            sent = self._authorization
            try:
                resp = await self._send(method, url, headers, data, sent)
            except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                if retry and retryable(e) and tries.failed(self.retry.budget(self._reached)):
                    await self.retry.pause(tries.failures - 1)
                    continue
                raise self._transport_error(e, method, url, max(tries.failures, 1)) from None
            self._reached = True
            if resp.status in ok:
                return resp
            resp.release()
            if resp.status == 401 and self._same_origin(url) and auth_tries < 2:
                auth_tries += 1
                if not await self._answer_challenge(resp, sent):
                    raise RegistryError(f"registry {self.name.host}: unauthorized (set OLLAMALIKE_REGISTRY_AUTH)")
            elif follow and (moved := self._redirect(resp, method, url, redirects)) is not None:
                method, url, redirects = *moved, redirects + 1
            elif retry and self.retry.retryable_status(resp.status) and tries.failed():
                await self.retry.pause(tries.failures - 1, resp.headers.get("Retry-After"))
            else:
                raise self._status_error(method, url, resp.status)

    async def _send(
        self, method: str, url: str, headers: dict[str, str] | None, data: BodyFactory | None, sent: str | None
    ) -> aiohttp.ClientResponse:
        """One request, carrying our authorization ``sent`` only to the registry's own origin."""
        hdrs = dict(headers or {})
        if sent and self._same_origin(url):
            hdrs["Authorization"] = sent
        # A request without a body must have its answer's headers within a few read timeouts in
        # all: a server trickling them byte by byte would never trip sock_read.
        deadline = HEADER_READS * self.read_timeout if data is None and self.read_timeout else None
        send = self.session.request(
            method, url, headers=hdrs, data=data() if data else None, allow_redirects=False, proxy=self._proxy(url)
        )
        return await asyncio.wait_for(send, deadline)

    def _redirect(self, resp: aiohttp.ClientResponse, method: str, url: str, redirects: int) -> tuple[str, str] | None:
        """The method and URL a redirect ``resp`` sends us to; None when it is not a redirect."""
        if resp.status not in (301, 302, 303, 307, 308) or "Location" not in resp.headers:
            return None
        if redirects + 1 > MAX_REDIRECTS:
            raise RegistryError(f"registry {self.name.host}: too many redirects")
        return ("GET" if resp.status == 303 else method), urljoin(url, resp.headers["Location"])

    def _transport_error(self, e: BaseException, method: str, url: str, tries: int) -> RegistryError:
        """The error for a request that got no answer (or a proxy's refusal) after ``tries`` tries."""
        proxy = self._proxy(url)
        if isinstance(e, aiohttp.ClientSSLError):
            hint = " (a plain-HTTP registry needs --insecure)" if self.scheme == "https" else ""
            return RegistryError(f"TLS connection to registry {self.name.host} failed{hint}: {e}")
        if isinstance(e, aiohttp.ClientHttpProxyError):
            # The proxy answered CONNECT with an error (407: it wants credentials, 403: it refuses the host).
            why = " (it requires authentication: put the credentials in the proxy URL)" if e.status == 407 else ""
            return RegistryError(
                f"the proxy {_redact(proxy)} refused the connection to registry {self.name.host}: "
                f"HTTP {e.status} {e.message}{why}"
            )
        if isinstance(e, aiohttp.ClientProxyConnectionError):
            return RegistryError(f"cannot reach the proxy {_redact(proxy)} for registry {self.name.host}: {e}")
        if isinstance(e, aiohttp.ClientConnectorDNSError):
            # Not transient in any useful sense: the name does not resolve (or we are offline).
            return RegistryError(f"cannot reach registry {self.name.host}: host not found")
        if isinstance(e, asyncio.TimeoutError) and not isinstance(e, aiohttp.ConnectionTimeoutError):
            return RegistryError(
                f"registry {self.name.host} stalled: no answer to {method} {urlsplit(url).path} "
                f"within {self.read_timeout or 0:g} s ({tries} tries)"
            )
        if isinstance(e, (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError)):
            return RegistryError(f"cannot reach registry {self.name.host}: {e or type(e).__name__}")
        return RegistryError(f"registry {self.name.host}: {method} {urlsplit(url).path} failed: {e or type(e).__name__}")

    def _status_error(self, method: str, url: str, status: int) -> RegistryError:
        what = urlsplit(url).path
        if status == 404:
            return RegistryNotFound(f"registry {self.name.host}: {what} not found")
        if status in (401, 403):
            return RegistryError(f"registry {self.name.host}: access denied to {self.name.repository}")
        proxy = self._proxy(url)
        if status == 407 and proxy:  # a plain-HTTP request goes to the proxy itself, which wants credentials
            return RegistryError(
                f"the proxy {_redact(proxy)} refused {method} {what} to registry {self.name.host}: "
                "HTTP 407, it requires authentication (put the credentials in the proxy URL)"
            )
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
