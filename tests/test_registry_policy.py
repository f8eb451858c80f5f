"""Which registries pulls and pushes may reach (OLLAMALIKE_REGISTRIES, OLLAMALIKE_NOPUSH), where
credentials may go, and digest references on push; through the real app and a real docker-registry.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from ollamalike.config import Config, load_config
from ollamalike.errors import BadRequest, Forbidden, RegistryError
from ollamalike.names import ModelName
from ollamalike.registry import auth, policy
from ollamalike.registry.pull import pull_model
from ollamalike.registry.push import push_model
from ollamalike.server.app import make_app
from ollamalike.store import Store
from tests.helpers import assert_api_error
from tests.registry_server import (
    DockerRegistry,
    ProxyBehaviour,
    RegistryProxy,
    make_model,
    registry_available,
)

needs_registry = pytest.mark.skipif(not registry_available(), reason="needs /usr/bin/docker-registry")


async def collect(chunks: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c async for c in chunks]


# --- configuration ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "registries", "nopush", "stall"),
    [
        ({}, None, False, 30.0),
        ({"OLLAMALIKE_REGISTRIES": " "}, None, False, 30.0),
        ({"OLLAMALIKE_REGISTRIES": "Registry.Example.com, 127.0.0.1:5000,"}, ("registry.example.com", "127.0.0.1:5000"), False, 30.0),
        ({"OLLAMALIKE_NOPUSH": "1", "OLLAMALIKE_PULL_STALL_TIMEOUT": "1m"}, None, True, 60.0),
        ({"OLLAMALIKE_PULL_STALL_TIMEOUT": "2.5"}, None, False, 2.5),
    ],
)
def test_registry_settings(env: dict[str, str], registries: tuple[str, ...] | None, nopush: bool, stall: float) -> None:
    config = load_config(env)
    assert (config.registries, config.nopush, config.pull_stall_timeout) == (registries, nopush, stall)


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"OLLAMALIKE_REGISTRIES": "https://x.example"}, "OLLAMALIKE_REGISTRIES"),
        ({"OLLAMALIKE_REGISTRIES": "a b"}, "OLLAMALIKE_REGISTRIES"),
        ({"OLLAMALIKE_PULL_STALL_TIMEOUT": "0"}, "OLLAMALIKE_PULL_STALL_TIMEOUT"),
        ({"OLLAMALIKE_PULL_STALL_TIMEOUT": "-5s"}, "OLLAMALIKE_PULL_STALL_TIMEOUT"),
        ({"OLLAMALIKE_PULL_STALL_TIMEOUT": "soon"}, "OLLAMALIKE_PULL_STALL_TIMEOUT"),
    ],
)
def test_bad_registry_settings_are_refused(env: dict[str, str], match: str) -> None:
    with pytest.raises(BadRequest, match=match):
        load_config(env)


# --- the policy, table-driven ----------------------------------------------------------------------

LISTED = Config(registries=("registry.example.com", "127.0.0.1:5000"))


@pytest.mark.parametrize(
    ("config", "name", "insecure", "allowed"),
    [
        (Config(), "evil.example/ns/m", False, True),  # unset: pull from anywhere
        (LISTED, "registry.example.com/ns/m", False, True),
        (LISTED, "registry.example.com:443/ns/m", False, True),  # the default port of a bare entry
        (LISTED, "registry.example.com:8443/ns/m", False, False),  # another port is another registry
        (LISTED, "127.0.0.1:5000/ns/m", True, True),
        (LISTED, "127.0.0.1:5001/ns/m", True, False),
        (LISTED, "m", False, False),  # registry.ollama.ai is not listed
        (LISTED, "hf.co/user/repo", False, False),
        (Config(registries=()), "registry.example.com/ns/m", False, False),
    ],
)
def test_pull_policy(config: Config, name: str, insecure: bool, allowed: bool) -> None:
    if allowed:
        policy.check_pull(config, ModelName.parse(name), insecure)
    else:
        with pytest.raises(Forbidden, match="not in OLLAMALIKE_REGISTRIES"):
            policy.check_pull(config, ModelName.parse(name), insecure)


@pytest.mark.parametrize(
    ("config", "name", "local", "match"),
    [
        (Config(), "evil.example/ns/m", True, None),  # the CLI's own request names its target
        (Config(), "evil.example/ns/m", False, "from another machine"),
        (LISTED, "registry.example.com/ns/m", False, None),
        (LISTED, "registry.example.com/ns/m", True, None),
        (LISTED, "evil.example/ns/m", True, "not in OLLAMALIKE_REGISTRIES"),  # a set list binds the CLI too
        (Config(nopush=True), "evil.example/ns/m", True, "OLLAMALIKE_NOPUSH"),
        (Config(nopush=True, registries=("evil.example",)), "evil.example/ns/m", True, "OLLAMALIKE_NOPUSH"),
    ],
)
def test_push_policy(config: Config, name: str, local: bool, match: str | None) -> None:
    if match is None:
        policy.check_push(config, ModelName.parse(name), False, local)
    else:
        with pytest.raises(Forbidden, match=match):
            policy.check_push(config, ModelName.parse(name), False, local)


# --- credentials go to their own origin only --------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "host", "scheme", "matches"),
    [
        ("registry.example.com", "registry.example.com", "https", True),
        ("registry.example.com", "registry.example.com:443", "https", True),
        ("registry.example.com", "registry.example.com:5000", "https", False),
        ("registry.example.com", "registry.example.com:80", "http", True),
        ("registry.example.com", "registry.example.com:443", "http", False),
        ("127.0.0.1", "127.0.0.1:5000", "http", False),
        ("127.0.0.1:5000", "127.0.0.1:5000", "http", True),
        ("Registry.Example.COM:8443", "registry.example.com:8443", "https", True),
    ],
)
def test_a_credential_entry_matches_its_own_host_and_port(entry: str, host: str, scheme: str, matches: bool) -> None:
    found = auth.credentials_for(((entry, "u", "p"),), host, scheme)
    assert found == (("u", "p") if matches else None)


@pytest.fixture
def model_bytes() -> bytes:
    return os.urandom(200_000)


@needs_registry
async def test_credentials_never_go_to_a_realm_on_another_origin(
    registry: DockerRegistry, tmp_path: Path, model_bytes: bytes
) -> None:
    src = Store(tmp_path / "src" / "models")
    name = f"{registry.host}/creds/model:v1"
    make_model(src, name, model_bytes=model_bytes)
    await collect(push_model(src, Config(), name, insecure=True))
    behaviour = ProxyBehaviour(token_user="erin", token_password="pw")
    proxy = RegistryProxy(registry.url, behaviour)
    await proxy.start()
    try:
        proxied = name.replace(registry.host, proxy.host)
        # The realm is the same server under another name: another origin, on loopback (so a token
        # may be asked for), but the registry's credentials must not go with the request.
        behaviour.realm = f"http://localhost:{proxy.port}/token"
        config = Config(registry_auth=((proxy.host, "erin", "pw"),))
        with pytest.raises(RegistryError, match="authentication failed"):
            await collect(pull_model(Store(tmp_path / "a" / "models"), config, proxied, insecure=True))
        assert behaviour.tokens_issued == 0
        # Credentials configured for the realm's own origin do go there.
        config = Config(registry_auth=((proxy.host, "x", "wrong"), (f"localhost:{proxy.port}", "erin", "pw")))
        lines = await collect(pull_model(Store(tmp_path / "b" / "models"), config, proxied, insecure=True))
        assert lines[-1] == {"status": "success"} and behaviour.tokens_issued >= 1

        # A bare-host entry is the default port only: not sent to 127.0.0.1:<port>.
        behaviour.token_user = None
        behaviour.basic_user, behaviour.basic_password = "erin", "pw"
        with pytest.raises(RegistryError, match="unauthorized"):
            await collect(pull_model(Store(tmp_path / "c" / "models"), Config(registry_auth=(("127.0.0.1", "erin", "pw"),)), proxied, insecure=True))
        lines = await collect(pull_model(Store(tmp_path / "d" / "models"), Config(registry_auth=((proxy.host, "erin", "pw"),)), proxied, insecure=True))
        assert lines[-1] == {"status": "success"}
    finally:
        await proxy.stop()


# --- through the app: 403s, a remote client's push, digest references --------------------------------


def remote_client(address: str) -> Callable[..., Any]:
    @web.middleware
    async def middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        return await handler(request.clone(remote=address))

    return middleware


async def app_client(aiohttp_client: Any, tmp_path: Path, env: dict[str, str], remote: str | None = None) -> Any:
    config = load_config({"OLLAMALIKE_HOME": str(tmp_path / "home"), **env})
    app = make_app(config, extra_middlewares=[remote_client(remote)] if remote else None)
    return await aiohttp_client(app)


async def test_pull_from_an_unlisted_registry_is_a_403(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await app_client(aiohttp_client, tmp_path, {"OLLAMALIKE_REGISTRIES": "registry.example.com"})
    resp = await client.post("/api/pull", json={"model": "127.0.0.1:9/ns/model", "insecure": True})
    assert_api_error(resp.status, await resp.read(), 403, "127.0.0.1:9 is not allowed")


@needs_registry
@pytest.mark.parametrize(
    ("env", "remote", "status", "contains"),
    [
        ({"OLLAMALIKE_NOPUSH": "1"}, None, 403, "OLLAMALIKE_NOPUSH"),
        ({}, "203.0.113.7", 403, "from another machine"),
        ({"OLLAMALIKE_REGISTRIES": "registry.example.com"}, None, 403, "not in OLLAMALIKE_REGISTRIES"),
        ({"OLLAMALIKE_REGISTRIES": "{registry}"}, "203.0.113.7", 200, ""),
        ({}, None, 200, ""),
    ],
    ids=["nopush", "remote-client-unlisted", "cli-unlisted", "remote-client-listed", "cli-default"],
)
async def test_push_policy_through_the_app(
    aiohttp_client: Any, tmp_path: Path, registry: DockerRegistry, model_bytes: bytes,
    env: dict[str, str], remote: str | None, status: int, contains: str,
) -> None:
    env = {k: v.replace("{registry}", registry.host) for k, v in env.items()}
    client = await app_client(aiohttp_client, tmp_path, env, remote)
    name = f"{registry.host}/policy/model:{len(env)}{remote is not None}"
    make_model(client.server.app["state"].store, name, model_bytes=model_bytes)
    resp = await client.post("/api/push", json={"model": name, "insecure": True, "stream": False})
    if status == 200:
        assert resp.status == 200 and (await resp.json()) == {"status": "success"}
    else:
        assert_api_error(resp.status, await resp.read(), status, contains)


@pytest.mark.parametrize("ref", ["127.0.0.1:9/ns/model@sha256:" + "a" * 64, "127.0.0.1:9/ns/model:v1@sha256:" + "a" * 64])
async def test_push_to_a_digest_reference_is_a_400(aiohttp_client: Any, tmp_path: Path, ref: str) -> None:
    client = await app_client(aiohttp_client, tmp_path, {})
    resp = await client.post("/api/push", json={"model": ref, "insecure": True})
    assert_api_error(resp.status, await resp.read(), 400, "a digest reference cannot be pushed to")


async def test_pull_of_a_bad_digest_reference_is_a_400(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await app_client(aiohttp_client, tmp_path, {})
    for ref in ["127.0.0.1:9/ns/model@sha256:abc", "hf.co/u/r@sha256:" + "a" * 64]:
        resp = await client.post("/api/pull", json={"model": ref, "insecure": True})
        assert_api_error(resp.status, await resp.read(), 400, "digest")


@needs_registry
async def test_pull_by_digest_from_a_real_registry(registry: DockerRegistry, tmp_path: Path, model_bytes: bytes) -> None:
    src = Store(tmp_path / "src" / "models")
    name = f"{registry.host}/pinned/model:v1"
    digest = make_model(src, name, model_bytes=model_bytes)
    await collect(push_model(src, Config(), name, insecure=True))
    # Move the tag on the registry: a pinned pull must still get the first manifest.
    make_model(src, name, model_bytes=os.urandom(1000))
    await collect(push_model(src, Config(), name, insecure=True))
    dst = Store(tmp_path / "dst" / "models")
    lines = await collect(pull_model(dst, Config(), f"{registry.host}/pinned/model@{digest}", insecure=True))
    assert lines[-1] == {"status": "success"}
    assert dst.get_manifest(f"{registry.host}/pinned/model:latest")[0] == digest
