"""Listing the models of one namespace of an OCI registry: ``/v2/_catalog`` and each repository's
``/v2/<name>/tags/list`` (what ``ollamalike pull --all-from REGISTRY/NAMESPACE`` pulls).

The catalog endpoint is optional in the distribution spec: the distribution registry
(``docker-registry``) serves it; registries that refuse it give a clear error naming it. Requests
go through ``oci.RegistryClient`` (auth challenges, retries, proxies) with the scope each one needs.
Both lists are paginated with ``Link: <...>; rel="next"``, followed up to a bound.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urljoin

from ollamalike.config import Config
from ollamalike.errors import BadRequest, RegistryError
from ollamalike.names import ModelName
from ollamalike.registry import oci

PAGE = 1000
MAX_PAGES = 100  # 100k repositories or tags: far past any namespace a fleet pulls whole
_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')
_SEGMENT = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")


def parse_source(text: str) -> tuple[str, str]:
    """``host[:port]/namespace`` -> (host, namespace); anything else is a BadRequest."""
    host, sep, namespace = text.strip().rstrip("/").partition("/")
    if not sep or not host or not _SEGMENT.fullmatch(namespace) or ("." not in host and ":" not in host
                                                                     and host != "localhost"):
        raise BadRequest(f"--all-from needs REGISTRY/NAMESPACE (for example registry.example.com:5000/team), got {text!r}")
    return host.lower(), namespace


async def _pages(client: oci.RegistryClient, url: str, key: str) -> list[str]:
    items: list[str] = []
    for _ in range(MAX_PAGES):
        async with await client.request("GET", url, headers={"Accept": "application/json"}) as resp:
            try:
                body: Any = await resp.json(content_type=None)
            except ValueError:
                raise RegistryError(f"registry {client.name.host}: {url} did not answer JSON") from None
            link = resp.headers.get("Link", "")
        values = body.get(key) if isinstance(body, dict) else None
        if values is not None and not (isinstance(values, list) and all(isinstance(v, str) for v in values)):
            raise RegistryError(f"registry {client.name.host}: malformed {key} list")
        items.extend(values or [])
        match = _NEXT.search(link)
        if match is None:
            return items
        url = urljoin(url, match.group(1))
    raise RegistryError(f"registry {client.name.host}: more than {MAX_PAGES} pages of {key}")


async def list_models(config: Config, source: str, insecure: bool = False, session: Any = None) -> list[str]:
    """Every ``host/namespace/model:tag`` in the namespace, sorted."""
    host, namespace = parse_source(source)
    own = session is None
    session = session or oci.new_session()
    try:
        def client_for(repository: str, scope: str) -> oci.RegistryClient:
            client = oci.RegistryClient(session, ModelName.parse(f"{host}/{repository}:latest"), insecure=insecure,
                                        registry_auth=config.registry_auth, proxies=config.proxies)
            client.scope = scope
            return client

        catalog = client_for(f"{namespace}/catalog", "registry:catalog:*")
        base = f"{catalog.scheme}://{host}/v2"
        try:
            repositories = await _pages(catalog, f"{base}/_catalog?n={PAGE}", "repositories")
        except oci.RegistryNotFound:
            raise RegistryError(f"registry {host} does not list its repositories (/v2/_catalog): "
                                "pull the models by name instead") from None
        names: list[str] = []
        for repository in sorted(r for r in repositories if r.startswith(namespace + "/") and r.count("/") == 1):
            client = client_for(repository, f"repository:{repository}:pull")
            tags = await _pages(client, f"{base}/{repository}/tags/list?n={PAGE}", "tags")
            names.extend(f"{host}/{repository}:{tag}" for tag in sorted(tags))
        return names
    finally:
        if own:
            await session.close()
