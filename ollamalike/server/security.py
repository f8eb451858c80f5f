"""Request gatekeeping: the Host-header check (DNS rebinding), CORS with an origin allow-list,
and API-key authentication (a bearer token or ``x-api-key``) (with an optional admin key for model-changing endpoints).

The middlewares run in that order, inside the error middleware, so every refusal is the API's
JSON error shape. CORS headers are added in ``on_response_prepare`` so that streamed responses
and error responses carry them too (a browser can only read a 401 that has them).
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable
from functools import lru_cache

from aiohttp import web
from aiohttp.typedefs import Middleware

from ollamalike.config import Config
from ollamalike.errors import Forbidden, Unauthorized

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CORS_ORIGIN_KEY = web.RequestKey("cors_origin", str)
ALLOWED_METHODS = "GET, HEAD, POST, PUT, DELETE, OPTIONS"
# What browsers and the official JS/OpenAI SDKs send; requested headers beyond these are refused.
ALLOWED_HEADERS = ("authorization", "content-type", "user-agent", "accept", "x-requested-with", "openai-beta",
                   "x-api-key", "anthropic-version", "anthropic-beta", "anthropic-dangerous-direct-browser-access")
ALLOWED_HEADER_PREFIXES = ("x-stainless-",)

# Model-changing endpoints that need an admin key when one is configured.
_ADMIN_ROUTES: tuple[tuple[str, str], ...] = (
    ("POST", "/api/create"),
    ("DELETE", "/api/delete"),
    ("POST", "/api/pull"),
    ("POST", "/api/push"),
    ("POST", "/api/copy"),
    ("POST", "/api/import"),
    ("POST", "/api/catalog"),  # makes the daemon contact a registry, as a pull does
)


def _config(request: web.Request) -> Config:
    config: Config = request.app["config"]
    return config


# -- Host header -------------------------------------------------------------------------------
def _host_name(header: str) -> str:
    """The host part of a Host header: "[::1]:8080" -> "::1", "Example.com:80" -> "example.com"."""
    text = header.strip().lower()
    if text.startswith("["):
        end = text.find("]")
        return text[1:end] if end > 0 else text
    if text.count(":") == 1:
        text = text.partition(":")[0]
    return text.rstrip(".")


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


@lru_cache(maxsize=1)
def _machine_names() -> frozenset[str]:
    # gethostname only: getfqdn may block on DNS, and this runs on the event loop.
    name = socket.gethostname().lower().rstrip(".")
    return frozenset({name, name.partition(".")[0]} - {""})


def host_allowed(header: str, config: Config) -> bool:
    """Whether a request with this Host header may be served on ``config``'s bind address."""
    name = _host_name(header)
    if not name or name == "localhost" or name.endswith(".localhost"):
        return True
    if name in (h.lower() for h in config.allowed_hosts):
        return True
    ip = _ip(name)
    if ip is not None and ip.is_loopback:
        return True
    bind = config.host.strip().lower()
    if name == bind:
        return True
    bind_ip = _ip(bind) if bind else ipaddress.ip_address("0.0.0.0")
    if bind_ip is not None and bind_ip.is_unspecified:
        # Listening on every interface: any address of this machine, or its name, is legitimate;
        # so are the local-only TLDs Ollama accepts (host.docker.internal from containers, mDNS .local).
        return ip is not None or name in _machine_names() or name.endswith((".internal", ".local"))
    return False


@web.middleware
async def host_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    header = request.headers.get("Host")
    # No Host header at all (HTTP/1.0 tools) cannot come from a browser being rebound.
    if header is not None and not host_allowed(header, _config(request)):
        raise Forbidden(f"host not allowed: {_host_name(header)!r} (set OLLAMALIKE_ALLOWED_HOSTS to allow it)")
    return await handler(request)


# -- CORS --------------------------------------------------------------------------------------
@lru_cache(maxsize=64)
def _origin_patterns(origins: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    """Allow-list entries as anchored regexes; ``*`` matches any run of characters."""
    return tuple(
        re.compile("".join(".*" if part == "*" else re.escape(part) for part in re.split(r"(\*)", o.lower())) + r"\Z")
        for o in origins
    )


def origin_allowed(origin: str, config: Config) -> bool:
    text = origin.strip().lower().rstrip("/")
    return any(p.match(text) for p in _origin_patterns(config.origins))


def _headers_allowed(requested: str) -> bool:
    for name in (h.strip().lower() for h in requested.split(",")):
        if name and name not in ALLOWED_HEADERS and not name.startswith(ALLOWED_HEADER_PREFIXES):
            return False
    return True


@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    origin = request.headers.get("Origin")
    if origin is None:
        return await handler(request)
    if not origin_allowed(origin, _config(request)):
        raise Forbidden(f"origin not allowed: {origin} (add it to OLLAMALIKE_ORIGINS)")
    request[CORS_ORIGIN_KEY] = origin
    wanted = request.headers.get("Access-Control-Request-Method")
    if request.method == "OPTIONS" and wanted is not None:
        # A preflight: answered here, before authentication (browsers never send credentials on it).
        requested = request.headers.get("Access-Control-Request-Headers", "")
        if wanted.upper() not in ALLOWED_METHODS.split(", "):
            raise Forbidden(f"method not allowed by CORS: {wanted}")
        if not _headers_allowed(requested):
            raise Forbidden(f"headers not allowed by CORS: {requested}")
        return web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Methods": ALLOWED_METHODS,
                "Access-Control-Allow-Headers": requested or ", ".join(ALLOWED_HEADERS),
                "Access-Control-Max-Age": "43200",
            },
        )
    return await handler(request)


async def add_response_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: CORS headers for an accepted origin; the bearer challenge on 401."""
    origin = request.get(CORS_ORIGIN_KEY)
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Credentials"] = "true"
        response.headers["Access-Control-Expose-Headers"] = "Content-Type, Content-Length"
        response.headers.add("Vary", "Origin")
    if response.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="ollamalike"'


# -- authentication ----------------------------------------------------------------------------
def bearer_token(request: web.Request) -> str | None:
    """The key from ``Authorization: Bearer <key>``, else from ``x-api-key`` (how Anthropic's clients send it)."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    api_key = request.headers.get("x-api-key", "").strip()
    return api_key or None


def key_matches(token: str, keys: tuple[str, ...]) -> bool:
    """Constant-time comparison against every key (no early exit that would leak which one matched)."""
    given = token.encode()
    found = False
    for key in keys:
        found |= hmac.compare_digest(given, key.encode())
    return found


def is_admin_route(method: str, path: str) -> bool:
    if path.startswith("/api/blobs/"):
        return method in ("HEAD", "POST")
    return (method, path) in _ADMIN_ROUTES


# Health probes (server/health.py): Kubernetes probes cannot easily send a key; without one the
# readiness answer has counts only.
_PUBLIC_PATHS = frozenset({"/", "/api/health", "/api/health/live"})


def is_public(method: str, path: str) -> bool:
    """Only the liveness checks are open: clients (and ``ensure_daemon``) poll ``/`` before they have a
    key, and probes poll ``/api/health``."""
    return path in _PUBLIC_PATHS and method in ("GET", "HEAD")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    config = _config(request)
    if not config.api_keys and not config.admin_keys:
        return await handler(request)
    if is_public(request.method, request.path):
        return await handler(request)
    token = bearer_token(request)
    admin = token is not None and bool(config.admin_keys) and key_matches(token, config.admin_keys)
    if is_admin_route(request.method, request.path) and config.admin_keys:
        if admin:
            return await handler(request)
        if token is None:
            raise Unauthorized("unauthorized: this endpoint needs the admin key (Authorization: Bearer <key>)")
        if key_matches(token, config.api_keys):
            raise Forbidden("forbidden: this endpoint needs the admin key")
        raise Unauthorized("unauthorized: invalid API key")
    if not config.api_keys or admin:
        return await handler(request)
    if token is None:
        raise Unauthorized("unauthorized: an API key is required (Authorization: Bearer <key>)")
    if not key_matches(token, config.api_keys):
        raise Unauthorized("unauthorized: invalid API key")
    return await handler(request)


def setup(app: web.Application) -> None:
    app.on_response_prepare.append(add_response_headers)


MIDDLEWARES: list[Middleware] = [host_middleware, cors_middleware, auth_middleware]
