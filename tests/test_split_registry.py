"""A split GGUF's manifest (several model layers, in shard order) pushed to and pulled from a real
docker-registry, between two real daemons: the pulled model has the same manifest and answers as
the unsplit file does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ollamalike.store import Store
from tests.daemon import Daemon, start_daemon
from tests.registry_server import DockerRegistry, registry_available
from tests.test_convert_split import model_layers, split_gguf

pytestmark = [
    pytest.mark.registry,
    pytest.mark.e2e,
    pytest.mark.skipif(not registry_available(), reason="needs /usr/bin/docker-registry"),
]
MODEL = "application/vnd.ollama.image.model"


@pytest.fixture(scope="module")
def daemons(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, Daemon]]:
    a = start_daemon(tmp_path_factory.mktemp("split-a"))
    try:
        b = start_daemon(tmp_path_factory.mktemp("split-b"))
    except BaseException:
        a.stop(check=False)
        raise
    yield a, b
    b.stop()
    a.stop()


def _answer(d: Daemon, name: str) -> str:
    status, body = d.request("POST", "/api/generate", {
        "model": name, "prompt": "Once upon a time", "raw": True, "stream": False,
        "options": {"temperature": 0, "num_predict": 12, "seed": 3},
    })
    assert status == 200 and body["done"], body
    return str(body["response"])


def test_split_model_pushes_and_pulls_with_its_model_layers_in_order(
    registry: DockerRegistry, daemons: tuple[Daemon, Daemon], tiny_chat_gguf: Path, tmp_path: Path
) -> None:
    a, b = daemons
    shards = split_gguf(tiny_chat_gguf, tmp_path / "split", 3)
    name = f"{registry.host}/e2e/split:v1"
    (tmp_path / "Modelfile").write_text(f"FROM {shards[0]}\n")
    created = a.cli("create", name, "-f", str(tmp_path / "Modelfile"))
    assert created.returncode == 0, created.stdout + created.stderr
    assert [p.read_bytes() for p in model_layers(a, name)] == [p.read_bytes() for p in shards]
    pushed = a.cli("push", name, "--insecure")
    assert pushed.returncode == 0, pushed.stderr

    pulled = b.cli("pull", name, "--insecure")
    assert pulled.returncode == 0, pulled.stderr
    src, dst = Store(a.models_dir), Store(b.models_dir)
    try:
        digest_a, manifest_a, body_a = src.get_manifest(name)
        digest_b, manifest_b, body_b = dst.get_manifest(name)
        assert digest_a == digest_b and body_a == body_b
        assert [x["mediaType"] for x in manifest_b["layers"]].count(MODEL) == 3
    finally:
        src.close()
        dst.close()
    assert [p.read_bytes() for p in model_layers(b, name)] == [p.read_bytes() for p in shards]

    (tmp_path / "Modelfile-whole").write_text(f"FROM {tiny_chat_gguf}\n")
    whole = b.cli("create", "whole", "-f", str(tmp_path / "Modelfile-whole"))
    assert whole.returncode == 0, whole.stderr
    assert _answer(b, name) == _answer(b, "whole")
    # A model built FROM the pulled split keeps its shards (and their order) under a new tag.
    status, body = b.request("POST", "/api/create", {"model": "split-child", "from": name, "system": "Be brief.",
                                                    "stream": False})
    assert status == 200, body
    assert model_layers(b, "split-child") == model_layers(b, name)
    assert _answer(b, "split-child") == _answer(b, "whole")
