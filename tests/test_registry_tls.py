"""Push and pull over HTTPS, against the real docker-registry serving a throwaway certificate.

TLS bodies cannot be taken off the socket (see ``registry.rawbody``), so this is the test of the
aiohttp read path against a real registry. The pull runs in a child process that trusts the
certificate through ``SSL_CERT_FILE``, which OpenSSL reads when aiohttp builds its context.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ollamalike.config import Config
from ollamalike.errors import RegistryError
from ollamalike.registry.pull import pull_model
from ollamalike.store import Store
from tests.helpers import store_snapshot
from tests.registry_server import DockerRegistry, registry_available, self_signed_certificate

pytestmark = [
    pytest.mark.registry,
    pytest.mark.skipif(not registry_available(), reason="needs /usr/bin/docker-registry"),
]

REPO_ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import asyncio, json, os, sys
from pathlib import Path
from ollamalike.config import Config
from ollamalike.registry import parts, rawbody
from ollamalike.registry.pull import pull_model
from ollamalike.registry.push import push_model
from ollamalike.store import Store
from tests.registry_server import make_model
parts.MIN_PART = 1024 * 1024  # several ranged parts, each a TLS stream read through aiohttp
detached = []
real_detach = rawbody.detach
def counting_detach(resp):
    result = real_detach(resp)
    detached.append(result is not None)
    return result
rawbody.detach = counting_detach
async def main():
    src, dst, name = Store(Path(sys.argv[1])), Store(Path(sys.argv[2])), sys.argv[3]
    pushed = make_model(src, name, model_bytes=os.urandom(6 * 1024 * 1024 + 1))
    async for _ in push_model(src, Config(), name):
        pass
    stats = {}
    async for _ in pull_model(dst, Config(), name, stats=stats):
        pass
    digest, manifest, body = dst.get_manifest(name)
    blobs_ok = all(dst.has_blob(layer["digest"]) for layer in manifest["layers"])
    print(json.dumps({"pushed": pushed, "pulled": digest, "blobs": blobs_ok, "stats": stats, "detached": detached}))
asyncio.run(main())
"""


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerRegistry]:
    cert, key = self_signed_certificate(tmp_path_factory.mktemp("cert"))
    reg = DockerRegistry(tmp_path_factory.mktemp("tls-registry"), tls=(cert, key))
    reg.start()
    yield reg
    reg.stop()


def test_push_and_pull_over_https(tls_registry: DockerRegistry, tmp_path: Path) -> None:
    assert tls_registry.tls is not None
    name = f"{tls_registry.host}/secure/model:v1"
    env = {**os.environ, "SSL_CERT_FILE": str(tls_registry.tls[0]), "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "src"), str(tmp_path / "dst"), name],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["pulled"] == result["pushed"] and result["blobs"] is True
    assert result["stats"]["transferred"] > 6 * 1024 * 1024
    assert result["detached"] and not any(result["detached"])  # every TLS body read through aiohttp


async def test_untrusted_certificate_is_a_clear_error_and_leaves_nothing(
    tls_registry: DockerRegistry, tmp_path: Path
) -> None:
    store = Store(tmp_path / "models")
    before = store_snapshot(store.root)
    with pytest.raises(RegistryError, match="TLS connection to registry .* failed"):
        async for _ in pull_model(store, Config(), f"{tls_registry.host}/secure/model:v1"):
            pass
    assert store_snapshot(store.root) == before
    assert store.list_tags() == []
