"""Registry authentication: parsing ``WWW-Authenticate`` challenges and the Bearer token flow.

Credentials (``config.registry_auth``) go only to the origin (scheme, host, port) of the entry
they are configured for: a registry's own credentials to the registry and to a token realm on
that same origin; a realm on another origin gets the credentials configured for its own host, or
none. A bare-host entry stands for that host's default port only (443, or 80 over plain HTTP).
Tokens are only ever asked for over HTTPS or from a loopback host: a registry that names a
plain-HTTP realm elsewhere gets an error, and never a password.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

import aiohttp

from ollamalike.config import is_loopback_host
from ollamalike.errors import RegistryError
from ollamalike.jsontypes import JSONValue
from ollamalike.registry.reading import read_bounded

_PARAM_RE = re.compile(r'([A-Za-z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')
MAX_TOKEN_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "bearer" or "basic", lower case
    params: dict[str, str]


def parse_challenge(header: str) -> Challenge:
    """``Bearer realm="https://auth",service="registry",scope="repository:a/b:pull"`` -> Challenge."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3)) for m in _PARAM_RE.finditer(rest)}
    return Challenge(scheme.lower(), params)


def is_safe_for_secrets(url: str) -> bool:
    """True for https:// URLs and for any URL on a loopback host."""
    parts = urlsplit(url)
    return parts.scheme == "https" or (parts.scheme == "http" and is_loopback_host(parts.hostname))


def host_port(host: str, scheme: str = "https") -> tuple[str, int]:
    """``("example.com", 443)`` for ``example.com`` over https: a bare host means the default port."""
    parts = urlsplit(f"{scheme}://{host}")
    try:
        port = parts.port
    except ValueError:
        port = None
    return (parts.hostname or "").lower(), port or (443 if scheme == "https" else 80)


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL, the default port filled in."""
    parts = urlsplit(url)
    return (parts.scheme.lower(), *host_port(parts.netloc.rpartition("@")[2], parts.scheme.lower()))


def credentials_for(
    registry_auth: tuple[tuple[str, str, str], ...], host: str, scheme: str = "https"
) -> tuple[str, str] | None:
    """The configured (user, password) for ``host`` (which may carry a port) reached over ``scheme``.

    An entry matches the same host and port only; an entry without a port is the default port.
    """
    wanted = host_port(host, scheme)
    for entry_host, user, password in registry_auth:
        if host_port(entry_host, scheme) == wanted:
            return user, password
    return None


def credentials_for_url(registry_auth: tuple[tuple[str, str, str], ...], url: str) -> tuple[str, str] | None:
    scheme, host, port = origin(url)
    return credentials_for(registry_auth, f"{host}:{port}" if ":" not in host else f"[{host}]:{port}", scheme)


def basic_header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


async def fetch_token(
    session: aiohttp.ClientSession,
    challenge: Challenge,
    default_scope: str,
    credentials: tuple[str, str] | None,
    proxy: str | None = None,
) -> str:
    """Ask the realm the registry named for a Bearer token (with Basic credentials when configured)."""
    realm = challenge.params.get("realm", "")
    if not realm:
        raise RegistryError("registry asked for a token but named no realm")
    if not is_safe_for_secrets(realm):
        raise RegistryError(f"refusing to request a registry token over plain HTTP from {realm}")
    query = {}
    if challenge.params.get("service"):
        query["service"] = challenge.params["service"]
    query["scope"] = challenge.params.get("scope") or default_scope
    headers = {}
    if credentials is not None:
        headers["Authorization"] = basic_header(*credentials)
    sep = "&" if "?" in realm else "?"
    try:
        async with session.get(
            realm + sep + urlencode(query), headers=headers, allow_redirects=False, proxy=proxy
        ) as resp:
            body = await read_bounded(resp, MAX_TOKEN_BYTES, "token answer", urlsplit(realm).netloc)
            if resp.status in (401, 403):
                raise RegistryError(f"registry authentication failed: token server answered {resp.status}")
            if resp.status != 200:
                raise RegistryError(f"registry token server answered HTTP {resp.status}")
    except aiohttp.ClientError as e:
        raise RegistryError(f"cannot reach registry token server: {e}") from None
    try:
        data: JSONValue = json.loads(body)
    except ValueError:
        raise RegistryError("registry token server sent invalid JSON") from None
    token = data.get("token") or data.get("access_token") if isinstance(data, dict) else None
    if not isinstance(token, str) or not token:
        raise RegistryError("registry token server sent no token")
    return token
