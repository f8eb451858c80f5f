"""Issue 15's Modelfile surface through the REAL daemon: the CLI (UTF-16 Modelfiles, DRAFT, errors),
/api/create's 400s, Ollama's Python client, /api/tags capabilities, and a registry pull of a model
whose config blob (written the way Ollama writes it) names a renderer and a parser.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ollamalike import OLLAMA_VERSION, __version__
from ollamalike.names import ModelName
from ollamalike.store import Store
from ollamalike.store.manifest import CONFIG_MEDIA_TYPE, MEDIA_MODEL, MEDIA_TEMPLATE
from tests.daemon import Daemon, start_daemon
from tests.helpers import assert_api_error
from tests.registry_server import DockerRegistry, registry_available

pytestmark = [pytest.mark.e2e]

SHAPED = "ns/coder:v1"  # the model put into daemon A's store with an Ollama-written config


def _put_ollama_shaped(models_dir: Path, name: str, model_file: Path) -> None:
    """A model as Ollama's create writes it: ConfigV2 in struct order, renderer/parser/requires set."""
    store = Store(models_dir)
    try:
        digest, size = store.add_blob_file(model_file)
        template, tsize = store.add_blob_bytes(b"{{ .Prompt }}")
        config = {
            "model_format": "gguf",
            "model_family": "llama",
            "model_families": ["llama"],
            "model_type": "1M",
            "file_type": "F32",
            "renderer": "qwen3-coder",
            "parser": "qwen3-coder",
            "requires": "0.0.3",
            "capabilities": ["tools"],
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [digest, template]},
        }
        cfg, cfg_size = store.add_blob_bytes(json.dumps(config).encode() + b"\n")
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": cfg, "size": cfg_size},
            "layers": [
                {"mediaType": MEDIA_MODEL, "digest": digest, "size": size},
                {"mediaType": MEDIA_TEMPLATE, "digest": template, "size": tsize},
            ],
        }
        store.put_manifest(ModelName.parse(name), json.dumps(manifest).encode())
    finally:
        store.close()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, tiny_chat_gguf: Path) -> Iterator[Daemon]:
    home = tmp_path_factory.mktemp("issue15-home")
    _put_ollama_shaped(home / "models", SHAPED, tiny_chat_gguf)
    d = start_daemon(home)
    yield d
    d.stop()


def _ok(proc: Any) -> str:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return str(proc.stdout)


def _digest(daemon: Daemon, name: str) -> str:
    status, tags = daemon.request("GET", "/api/tags")
    assert status == 200
    by_name = {m["name"]: m for m in tags["models"]}
    return str(by_name[ModelName.parse(name).display]["digest"])


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-8-sig"])
def test_cli_creates_from_a_utf16_modelfile_with_every_new_instruction_and_rebuilds_it(
    daemon: Daemon, tmp_path: Path, tiny_chat_gguf: Path, tiny_chat_q4_gguf: Path, encoding: str
) -> None:
    text = (
        f"FROM {tiny_chat_gguf}\nDRAFT {tiny_chat_q4_gguf}\nRENDERER qwen3-coder\nPARSER qwen3-coder\n"
        "REQUIRES 0.1.0\nSYSTEM Réponds en français 🦙\nMESSAGE user hi\nPARAMETER temperature 0.5\n"
    )
    bom = "\ufeff" if encoding != "utf-8-sig" else ""
    (tmp_path / "Modelfile").write_bytes((bom + text).encode(encoding))
    name = f"u16-{encoding}"
    _ok(daemon.cli("create", name, "-f", str(tmp_path / "Modelfile")))
    status, shown = daemon.request("POST", "/api/show", {"model": name})
    assert status == 200, shown
    assert (shown["renderer"], shown["parser"], shown["requires"]) == ("qwen3-coder", "qwen3-coder", "0.1.0")
    assert shown["system"] == "Réponds en français 🦙"
    assert shown["messages"] == [{"role": "user", "content": "hi"}]
    summary = _ok(daemon.cli("show", name))
    assert re.search(r"^\s+requires\s+0\.1\.0$", summary, re.M), summary
    # show --modelfile writes DRAFT/RENDERER/PARSER/REQUIRES back; creating from it gives the same digest.
    written = _ok(daemon.cli("show", name, "--modelfile"))
    for line in ("\nDRAFT ", "\nRENDERER qwen3-coder\n", "\nPARSER qwen3-coder\n", "\nREQUIRES 0.1.0\n"):
        assert line in written
    (tmp_path / "Again").write_text(written, encoding="utf-8")
    _ok(daemon.cli("create", f"{name}-again", "-f", str(tmp_path / "Again")))
    assert _digest(daemon, f"{name}-again") == _digest(daemon, name)


@pytest.mark.parametrize(
    ("modelfile", "args", "message"),
    [
        ("FROM {model}\nPARAMETER temprature 0.5\n", [], 'unknown parameter "temprature"'),
        ("FROM {model}\nREQUIRES 9.0.0\n", [],
         f"this model requires Ollama version 9.0.0 or newer, but ollamalike {__version__} is compatible with Ollama "
         f"{OLLAMA_VERSION}"),
        ("FROM {model}\nREQUIRES nine\n", [], "requires must be a valid semver"),
        ("FROM {model}\nMESSAGE User hi\n", [], 'message role must be "system", "user" or "assistant", got "User"'),
        ("FROM {model}\nDRAFT ./missing.gguf\n", [], "DRAFT file not found"),
        ("FROM {model}\nDRAFT {model}\n", [], "DRAFT must not reference the same local path as FROM"),
        ("FROM {model}\nDRAFT ghost-draft\n", [], "draft model 'ghost-draft' not found"),
        ("FROM {model}\n", ["--draft-quantize", "q8_0"], "--draft-quantize requires a DRAFT model"),
        ("FROM {model}\nDRAFT {q4}\n", ["--draft-quantize", "q8_0"], "requires an unquantized draft model, got Q4_0"),
    ],
)
def test_cli_create_errors(
    daemon: Daemon, tmp_path: Path, tiny_chat_gguf: Path, tiny_chat_q4_gguf: Path, modelfile: str, args: list[str],
    message: str,
) -> None:
    (tmp_path / "Modelfile").write_text(modelfile.format(model=tiny_chat_gguf, q4=tiny_chat_q4_gguf))
    before = daemon.request("GET", "/api/tags")[1]
    proc = daemon.cli("create", "bad", "-f", str(tmp_path / "Modelfile"), *args)
    assert proc.returncode != 0
    assert message in proc.stderr + proc.stdout
    assert daemon.request("GET", "/api/tags")[1] == before


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"modelfile": "FROM tiny15\nPARAMETER temprature 0.5"}, 'unknown parameter "temprature"'),
        ({"from": "tiny15", "parameters": {"temprature": 0.5}}, 'unknown parameter "temprature"'),
        ({"from": "tiny15", "requires": "0.22.0"}, "requires Ollama version 0.22.0 or newer, but ollamalike"),
        ({"modelfile": "FROM tiny15\nREQUIRES 3"}, "version 3 or newer"),
        ({"from": "tiny15", "requires": "1.0"}, "version 1.0 or newer"),
        ({"from": "tiny15", "requires": "one"}, "requires must be a valid semver"),
        ({"from": "tiny15", "renderer": "no way"}, "invalid renderer name"),
        ({"from": "tiny15", "renderer": "harmony"}, 'unknown renderer "harmony": known renderers are'),
        ({"from": "tiny15", "draft": "ghost"}, "draft model 'ghost' not found"),
        ({"from": "tiny15", "draft_files": {"d.gguf": "sha256:" + "2" * 64}}, "not found"),
        ({"from": "tiny15", "draft_quantize": "q8_0"}, "requires a DRAFT model"),
        ({"modelfile": "FROM tiny15\nMESSAGE ASSISTANT hi"}, "message role must be"),
    ],
)
def test_api_create_refuses_with_a_400(daemon: Daemon, tiny_chat_gguf: Path, body: dict[str, Any], message: str,
                                       stream: bool) -> None:
    _ok(daemon.cli("cp", SHAPED, "tiny15"))
    status, answer = daemon.request("POST", "/api/create", {"model": "refused", "stream": stream, **body})
    assert_api_error(status, answer, 400, message)
    assert daemon.request("POST", "/api/show", {"model": "refused"})[0] == 404


def test_ollama_client_sees_the_new_fields_it_exposes(daemon: Daemon) -> None:
    import ollama

    client = ollama.Client(host=daemon.base_url)
    assert client.create("client15", from_=SHAPED, system="be brief").status == "success"
    shown = client.show("client15")
    # ollama 0.6's ShowResponse has no renderer/parser/requires fields: they reach it in the Modelfile.
    assert shown.modelfile is not None
    assert "\nRENDERER qwen3-coder\n" in shown.modelfile and "\nPARSER qwen3-coder\n" in shown.modelfile
    assert shown.capabilities is not None and "completion" in shown.capabilities and "tools" in shown.capabilities
    listed = client.list()  # entries with "capabilities" still parse
    assert any(m.model == "client15:latest" for m in listed.models)
    status, tags = daemon.request("GET", "/api/tags")
    assert status == 200
    for entry in tags["models"]:
        status, one = daemon.request("POST", "/api/show", {"model": entry["name"]})
        assert entry["capabilities"] == one["capabilities"], entry["name"]
    status, verbose = daemon.request("POST", "/api/show", {"model": "client15", "verbose": True})
    assert status == 200
    assert verbose["tensors"] and set(verbose["tensors"][0]) == {"name", "type", "shape"}
    assert (verbose["renderer"], verbose["parser"], verbose["requires"]) == ("qwen3-coder", "qwen3-coder", "0.0.3")


@pytest.mark.registry
@pytest.mark.skipif(not registry_available(), reason="needs /usr/bin/docker-registry")
def test_pulled_model_with_an_ollama_config_keeps_its_renderer_and_parser(
    registry: DockerRegistry, daemon: Daemon, tmp_path_factory: pytest.TempPathFactory
) -> None:
    remote = f"{registry.host}/issue15/coder:v1"
    _ok(daemon.cli("cp", SHAPED, remote))
    _ok(daemon.cli("push", remote, "--insecure"))
    other = start_daemon(tmp_path_factory.mktemp("issue15-pull"))
    try:
        _ok(other.cli("pull", remote, "--insecure"))
        status, shown = other.request("POST", "/api/show", {"model": remote})
        assert status == 200, shown
        assert (shown["renderer"], shown["parser"], shown["requires"]) == ("qwen3-coder", "qwen3-coder", "0.0.3")
        assert "tools" in shown["capabilities"]  # declared in the config, as Ollama adds it
        assert "\nRENDERER qwen3-coder\n" in shown["modelfile"]
        # A model built on the pulled one inherits them (Ollama's create copies them from the base config).
        status, _ = other.request("POST", "/api/create", {"model": "derived", "from": remote, "stream": False})
        assert status == 200
        status, derived = other.request("POST", "/api/show", {"model": "derived"})
        assert (derived["renderer"], derived["parser"]) == ("qwen3-coder", "qwen3-coder")
    finally:
        other.stop()
