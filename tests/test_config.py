"""Configuration: durations, hosts, OLLAMA_* aliases, defaults and key files."""

from __future__ import annotations

from pathlib import Path

import pytest

from ollamalike.config import DEFAULT_ORIGINS, Config, load_config, parse_duration, parse_host
from ollamalike.errors import BadRequest


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("1h30m15s", 5415.0),
        ("1.5h", 5400.0),
        ("300ms", 0.3),
        ("2us", 2e-6),
        ("1µs", 1e-6),
        ("10ns", 1e-8),
        ("-1", -1.0),
        ("-5m", -300.0),
        ("+5s", 5.0),
        ("0", 0.0),
        ("10", 10.0),
        ("2.5", 2.5),
        (" 5m ", 300.0),
        (10, 10.0),
        (1.5, 1.5),
        (-1, -1.0),
        (0, 0.0),
    ],
)
def test_parse_duration(value: str | int | float, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["", "   ", "abc", "5x", "m", "5m3", "five minutes", "5 m", True, False, "1d", "1h-5m", "--5m", "+-5m"])
def test_parse_duration_rejects(value: str | bool) -> None:
    with pytest.raises(BadRequest, match="invalid duration"):
        parse_duration(value)


@pytest.mark.parametrize(
    ("value", "host", "port"),
    [
        ("127.0.0.1", "127.0.0.1", 11434),
        ("0.0.0.0", "0.0.0.0", 11434),
        ("0.0.0.0:8080", "0.0.0.0", 8080),
        (":8080", "127.0.0.1", 8080),
        ("localhost:11435", "localhost", 11435),
        ("http://example.com:1", "example.com", 1),
        ("https://example.com/", "example.com", 11434),
        ("[::1]:9", "::1", 9),
        ("[::1]", "::1", 11434),
        ("::1", "::1", 11434),
        ("  myhost  ", "myhost", 11434),
        ("", "127.0.0.1", 11434),
    ],
)
def test_parse_host(value: str, host: str, port: int) -> None:
    assert parse_host(value) == (host, port)


@pytest.mark.parametrize("value", ["h:0", "h:65536", "h:abc", "h:-1", "[::1", "[::1]:x", "h:"])
def test_parse_host_rejects(value: str) -> None:
    with pytest.raises(BadRequest, match="invalid"):
        parse_host(value)


def test_defaults() -> None:
    cfg = load_config({})
    assert (cfg.host, cfg.port) == ("127.0.0.1", 11434)
    assert cfg.home == Path.home() / ".ollamalike"
    assert cfg.models_dir == cfg.home / "models"
    assert cfg.keep_alive == 300.0
    assert (cfg.num_parallel, cfg.max_loaded_models, cfg.max_queue) == (4, 3, 512)
    assert cfg.context_length == 0
    assert cfg.origins == DEFAULT_ORIGINS
    assert cfg.api_keys == () and cfg.admin_keys == ()
    assert cfg.debug is False and cfg.flash_attention == "auto"
    assert cfg.kv_cache_type == "f16"
    assert cfg.load_timeout == 300.0
    assert cfg.base_url == "http://127.0.0.1:11434"
    assert cfg.log_dir == cfg.home / "logs" and cfg.run_dir == cfg.home / "run"


def test_the_test_environment_is_private(_private_data_dir: Path) -> None:
    cfg = load_config()
    assert cfg.home == _private_data_dir
    assert cfg.models_dir == _private_data_dir / "models"


@pytest.mark.parametrize(
    ("env", "attr", "expected"),
    [
        ({"OLLAMA_HOST": "0.0.0.0:9999"}, "port", 9999),
        ({"OLLAMALIKE_HOST": "1.2.3.4", "OLLAMA_HOST": "5.6.7.8"}, "host", "1.2.3.4"),
        ({"OLLAMALIKE_HOST": "", "OLLAMA_HOST": "5.6.7.8"}, "host", "5.6.7.8"),
        ({"OLLAMA_MODELS": "/srv/models"}, "models_dir", Path("/srv/models")),
        ({"OLLAMALIKE_MODELS": "/a", "OLLAMA_MODELS": "/b"}, "models_dir", Path("/a")),
        ({"OLLAMALIKE_HOME": "/h"}, "models_dir", Path("/h/models")),
        ({"OLLAMA_KEEP_ALIVE": "10m"}, "keep_alive", 600.0),
        ({"OLLAMA_KEEP_ALIVE": "-1"}, "keep_alive", -1.0),
        ({"OLLAMALIKE_KEEP_ALIVE": "0"}, "keep_alive", 0.0),
        ({"OLLAMA_NUM_PARALLEL": "8"}, "num_parallel", 8),
        ({"OLLAMA_NUM_PARALLEL": "0"}, "num_parallel", 1),
        ({"OLLAMA_MAX_LOADED_MODELS": "1"}, "max_loaded_models", 1),
        ({"OLLAMA_MAX_QUEUE": "2"}, "max_queue", 2),
        ({"OLLAMA_CONTEXT_LENGTH": "8192"}, "context_length", 8192),
        ({"OLLAMA_CONTEXT_LENGTH": "-5"}, "context_length", 0),
        ({"OLLAMA_DEBUG": "1"}, "debug", True),
        ({"OLLAMA_DEBUG": "true"}, "debug", True),
        ({"OLLAMA_DEBUG": "0"}, "debug", False),
        ({"OLLAMA_FLASH_ATTENTION": "yes"}, "flash_attention", "on"),
        ({"OLLAMALIKE_FLASH_ATTENTION": "1"}, "flash_attention", "on"),
        ({"OLLAMALIKE_FLASH_ATTENTION": "0"}, "flash_attention", "off"),
        ({"OLLAMALIKE_FLASH_ATTENTION": "false"}, "flash_attention", "off"),
        ({"OLLAMALIKE_FLASH_ATTENTION": "Auto"}, "flash_attention", "auto"),
        ({"OLLAMALIKE_FLASH_ATTENTION": ""}, "flash_attention", "auto"),
        ({"OLLAMA_KV_CACHE_TYPE": "Q8_0"}, "kv_cache_type", "q8_0"),
        ({}, "prompt_cache_bytes", 1 << 30),
        ({"OLLAMALIKE_PROMPT_CACHE": "0"}, "prompt_cache_bytes", 0),
        ({"OLLAMALIKE_PROMPT_CACHE": "123456"}, "prompt_cache_bytes", 123456),
        ({"OLLAMALIKE_PROMPT_CACHE": "512MiB"}, "prompt_cache_bytes", 512 << 20),
        ({"OLLAMA_PROMPT_CACHE": "1.5 GB"}, "prompt_cache_bytes", 1_500_000_000),
        ({"OLLAMALIKE_PROMPT_CACHE": "2gib"}, "prompt_cache_bytes", 2 << 30),
        ({"OLLAMA_LOAD_TIMEOUT": "30s"}, "load_timeout", 30.0),
        ({"OLLAMA_ORIGINS": "https://a.example, https://b.example"}, "origins",
         ("https://a.example", "https://b.example") + DEFAULT_ORIGINS),
        ({"OLLAMALIKE_REGISTRY_AUTH": "r.example=u:p:w, r2=x:y"}, "registry_auth",
         (("r.example", "u", "p:w"), ("r2", "x", "y"))),
    ],
)
def test_environment(env: dict[str, str], attr: str, expected: object) -> None:
    assert getattr(load_config(env), attr) == expected


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OLLAMA_NUM_PARALLEL": "four"}, "OLLAMALIKE_NUM_PARALLEL must be an integer"),
        ({"OLLAMALIKE_PROMPT_CACHE": "lots"}, "OLLAMALIKE_PROMPT_CACHE must be a size in bytes"),
        ({"OLLAMALIKE_PROMPT_CACHE": "-1"}, "OLLAMALIKE_PROMPT_CACHE must be a size in bytes"),
        ({"OLLAMA_PROMPT_CACHE": "2 GiBs"}, "OLLAMALIKE_PROMPT_CACHE must be a size in bytes"),
        ({"OLLAMA_MAX_QUEUE": "1.5"}, "OLLAMALIKE_MAX_QUEUE must be an integer"),
        ({"OLLAMA_KEEP_ALIVE": "forever"}, "invalid duration"),
        ({"OLLAMA_HOST": "h:99999"}, "invalid port"),
        ({"OLLAMALIKE_REGISTRY_AUTH": "nopassword"}, "host=user:password"),
        ({"OLLAMALIKE_API_KEY": "@/nonexistent/keys.txt"}, "cannot read API key file"),
        ({"OLLAMALIKE_FLASH_ATTENTION": "maybe"}, "FLASH_ATTENTION must be on, off or auto"),
    ],
)
def test_environment_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        load_config(env)


@pytest.mark.parametrize(
    ("host", "url"),
    [("0.0.0.0", "http://127.0.0.1:11434"), ("::", "http://[::1]:11434"), ("::1", "http://[::1]:11434"),
     ("example.com", "http://example.com:11434")],
)
def test_base_url(host: str, url: str) -> None:
    assert Config(host=host).base_url == url


def test_api_keys_inline() -> None:
    assert load_config({"OLLAMALIKE_API_KEY": " k1, k2 ,,k3 "}).api_keys == ("k1", "k2", "k3")


@pytest.mark.parametrize("prefix", ["@", ""])
def test_api_key_files(tmp_path: Path, prefix: str) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text("# team keys\nalpha\n\n  beta  \n#gamma\n")
    cfg = load_config({"OLLAMALIKE_API_KEY": f"{prefix}{keys}", "OLLAMALIKE_ADMIN_KEY": f"@{keys}"})
    assert cfg.api_keys == ("alpha", "beta")
    assert cfg.admin_keys == ("alpha", "beta")


def test_config_is_frozen() -> None:
    cfg = load_config({})
    with pytest.raises(AttributeError):
        cfg.port = 1  # type: ignore[misc]


def test_proxies_from_the_environment() -> None:
    proxies = load_config({"HTTPS_PROXY": "http://proxy.corp:3128", "http_proxy": "proxy.corp:8080",
                           "NO_PROXY": "internal.corp, .lan,registry.local:5000"}).proxies
    assert (proxies.https, proxies.http) == ("http://proxy.corp:3128", "http://proxy.corp:8080")
    cases = {
        "https://registry.ollama.ai/v2/": "http://proxy.corp:3128",
        "http://10.0.0.5:5000/v2/": "http://proxy.corp:8080",
        "https://internal.corp/v2/": None,
        "https://a.b.internal.corp/v2/": None,  # a subdomain of a NO_PROXY name
        "https://notinternal.corp/v2/": "http://proxy.corp:3128",  # a suffix, not a subdomain
        "http://box.lan/v2/": None,
        "http://registry.local:5000/v2/": None,
        "http://registry.local:6000/v2/": "http://proxy.corp:8080",  # NO_PROXY named another port
        "http://127.0.0.1:5000/v2/": None,  # loopback is never proxied
        "http://localhost:5000/v2/": None,
        "http://[::1]:5000/v2/": None,
    }
    for url, expected in cases.items():
        assert proxies.for_url(url) == expected, url
    assert load_config({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "*"}).proxies.for_url("https://x.y/") is None
    assert load_config({}).proxies.for_url("https://registry.ollama.ai/") is None


def test_a_proxy_we_cannot_use_does_not_stop_the_config() -> None:
    # Other tools share HTTPS_PROXY; only registry requests through it fail (tests/test_registry_oci.py).
    assert load_config({"HTTPS_PROXY": "socks5://proxy:1080"}).proxies.https == "socks5://proxy:1080"
