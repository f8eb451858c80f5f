"""One store for many nodes (issue 18): ``ollamalike pull --all-from REGISTRY/NAMESPACE`` against a
real docker-registry. A build node pushes models to two namespaces; a fresh node pulls every model
(every tag) of one namespace and nothing of the other. Bad sources are one clear error each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ollamalike.config import load_config
from ollamalike.errors import BadRequest
from ollamalike.registry.catalog import parse_source
from tests.daemon import Daemon, free_port
from tests.registry_server import DockerRegistry, registry_available

pytestmark = [
    pytest.mark.registry,
    pytest.mark.e2e,
    pytest.mark.skipif(not registry_available(), reason="needs /usr/bin/docker-registry"),
]


def _ok(result: object) -> str:
    assert getattr(result, "returncode", 1) == 0, getattr(result, "stderr", "")
    return str(getattr(result, "stdout", "")) + str(getattr(result, "stderr", ""))


def _error(result: object, contains: str) -> None:
    assert getattr(result, "returncode", 0) == 1, result
    last = str(getattr(result, "stderr", "")).strip().splitlines()[-1]
    assert last.startswith("Error: ") and contains in last, last


def test_pull_all_from_a_namespace(registry: DockerRegistry, daemon_factory: Callable[..., Daemon],
                                   tiny_chat_gguf: Path, tmp_path: Path) -> None:
    build, node = daemon_factory(), daemon_factory()
    wanted = [f"{registry.host}/team/coder:latest", f"{registry.host}/team/tiny:v1", f"{registry.host}/team/tiny:v2"]
    other = f"{registry.host}/other/tiny:v1"
    for i, name in enumerate([*wanted, other]):
        modelfile = tmp_path / f"Modelfile{i}"
        modelfile.write_text(f'FROM {tiny_chat_gguf}\nSYSTEM "model {i}"\n')
        _ok(build.cli("create", name, "-f", str(modelfile)))
        _ok(build.cli("push", name, "--insecure"))

    out = _ok(node.cli("pull", "--all-from", f"{registry.host}/team", "--insecure", timeout=300))
    for index, name in enumerate(wanted, 1):
        assert f"pulling {name} ({index}/3)" in out
    listed = [line.split()[0] for line in _ok(node.cli("list")).splitlines()[1:]]
    assert sorted(listed) == sorted(wanted), listed
    shown = node.request("POST", "/api/show", {"model": wanted[1]})
    assert shown[0] == 200 and shown[1]["system"] == "model 1"

    _error(node.cli("pull", "--all-from", f"{registry.host}/nobody", "--insecure"), "no models found")
    _error(node.cli("pull", "--all-from", f"127.0.0.1:{free_port()}/team", "--insecure"), "cannot reach registry")


def test_pull_needs_exactly_one_of_a_model_and_all_from(daemon: Daemon) -> None:
    _error(daemon.cli("pull"), "needs a MODEL or --all-from")
    _error(daemon.cli("pull", "tiny", "--all-from", "127.0.0.1:5000/team"), "needs a MODEL or --all-from")
    _error(daemon.cli("pull", "--all-from", "team"), "REGISTRY/NAMESPACE")
    status, body = daemon.request("POST", "/api/catalog", {})
    assert status == 400 and "from is required" in body["error"]


@pytest.mark.parametrize("source", ["team", "/team", "registry.example.com", "registry.example.com/",
                                    "registry.example.com/a/b", "registry.example.com/Team", "nohost/team"])
def test_bad_sources_are_refused_before_any_request(source: str) -> None:
    with pytest.raises(BadRequest, match="REGISTRY/NAMESPACE"):
        parse_source(source)


def test_good_sources_parse() -> None:
    assert parse_source("Registry.Example.com:5000/team/") == ("registry.example.com:5000", "team")
    assert parse_source("localhost/ml-models") == ("localhost", "ml-models")


def test_a_registry_without_a_catalog_is_a_clear_error(tmp_path: Path) -> None:
    """A registry answering 404 to /v2/_catalog (optional in the spec) names the endpoint."""
    from aiohttp import web

    from ollamalike.errors import RegistryError
    from ollamalike.registry.catalog import list_models

    async def v2(_request: web.Request) -> web.Response:
        return web.json_response({})

    async def run() -> str:
        app = web.Application()
        app.router.add_get("/v2/", v2)  # a registry, but no /v2/_catalog: 404
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        try:
            with pytest.raises(RegistryError) as info:
                await list_models(load_config({"OLLAMALIKE_HOME": str(tmp_path)}), f"127.0.0.1:{port}/team",
                                  insecure=True)
            return str(info.value)
        finally:
            await runner.cleanup()

    message = asyncio.run(run())
    assert "/v2/_catalog" in message and "by name" in message


def test_catalog_and_tags_pages_are_followed_and_only_the_namespace_is_kept(tmp_path: Path) -> None:
    """An in-process registry that pages both lists with Link headers (docker-registry answers in one)."""
    from aiohttp import web

    from ollamalike.registry.catalog import list_models

    pages = {
        "/v2/_catalog": [(["other/c", "team/a"], "/v2/_catalog?last=team/a&n=1000"),
                         (["team/b", "team/x/nested", "teamster/d"], None)],
        "/v2/team/a/tags/list": [(["v1"], None)],
        "/v2/team/b/tags/list": [(["2"], "/v2/team/b/tags/list?last=2&n=1000"), (["1"], None)],
    }
    seen: list[str] = []

    async def listing(request: web.Request) -> web.Response:
        seen.append(request.path_qs)
        page = 1 if "last=" in request.query_string else 0
        items, link = pages[request.path][page]
        key = "repositories" if request.path == "/v2/_catalog" else "tags"
        headers = {"Link": f'<{link}>; rel="next"'} if link else {}
        return web.json_response({key: items}, headers=headers)

    async def run() -> list[str]:
        app = web.Application()
        for path in pages:
            app.router.add_get(path, listing)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            return await list_models(load_config({"OLLAMALIKE_HOME": str(tmp_path)}), f"127.0.0.1:{port}/team",
                                     insecure=True)
        finally:
            await runner.cleanup()

    names = asyncio.run(run())
    host = names[0].split("/")[0]
    assert names == [f"{host}/team/a:v1", f"{host}/team/b:1", f"{host}/team/b:2"]
    assert sum("_catalog" in s for s in seen) == 2 and sum("team/b/tags" in s for s in seen) == 2
    assert not any("nested" in s or "teamster" in s or "other" in s for s in seen)


async def test_listing_a_registry_needs_the_admin_key(aiohttp_client: Any, tmp_path: Path) -> None:
    from ollamalike.server.app import make_app
    from tests.helpers import assert_api_error

    app = make_app(load_config({"OLLAMALIKE_HOME": str(tmp_path), "OLLAMALIKE_API_KEY": "user",
                                "OLLAMALIKE_ADMIN_KEY": "admin"}))
    client = await aiohttp_client(app)
    resp = await client.post("/api/catalog", json={"from": "127.0.0.1:1/team"}, headers={"Authorization": "Bearer user"})
    assert_api_error(resp.status, await resp.read(), 403, "admin key")
    resp = await client.post("/api/catalog", json={"from": "bad"}, headers={"Authorization": "Bearer admin"})
    assert_api_error(resp.status, await resp.read(), 400, "REGISTRY/NAMESPACE")
