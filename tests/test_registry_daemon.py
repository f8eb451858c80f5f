"""Push and pull through the REAL daemon and CLI, against a real docker-registry; import-ollama.

Daemon A creates a model from the tiny GGUF and pushes it; daemon B (a clean store) pulls it and
must end up with identical manifest and blob digests and a working model. Also: /api/pull and
/api/push input errors, ``stream: false``, and importing an Ollama models directory with hard links.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ollamalike.store import Store
from tests.daemon import Daemon, start_daemon
from tests.helpers import assert_api_error, store_snapshot
from tests.registry_server import DockerRegistry, registry_available

pytestmark = [
    pytest.mark.registry,
    pytest.mark.e2e,
    pytest.mark.skipif(not registry_available(), reason="needs /usr/bin/docker-registry"),
]


@pytest.fixture(scope="module")
def daemons(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, Daemon]]:
    a = start_daemon(tmp_path_factory.mktemp("home-a"))
    try:
        b = start_daemon(tmp_path_factory.mktemp("home-b"))
    except BaseException:
        a.stop(check=False)
        raise
    yield a, b
    b.stop()
    a.stop()


def ndjson(daemon: Daemon, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    req = urllib.request.Request(
        daemon.base_url + path, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=120) as resp:
        assert resp.headers["Content-Type"].startswith("application/x-ndjson")
        return [json.loads(line) for line in resp.read().splitlines() if line.strip()]


def test_push_then_pull_between_daemons(
    registry: DockerRegistry, daemons: tuple[Daemon, Daemon], tiny_chat_gguf: Path, tmp_path: Path
) -> None:
    a, b = daemons
    name = f"{registry.host}/e2e/tiny:v1"
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(f'FROM {tiny_chat_gguf}\nPARAMETER temperature 0.5\nSYSTEM "Be brief."\n')
    created = a.cli("create", name, "-f", str(modelfile))
    assert created.returncode == 0, created.stderr

    pushed = a.cli("push", name, "--insecure")
    assert pushed.returncode == 0, pushed.stderr
    out = pushed.stderr + pushed.stdout
    assert "retrieving manifest" in out and "pushing manifest" in out and "success" in out
    assert "pushing " in out and "100%" in out  # not a terminal: one plain line per finished layer

    pulled = b.cli("pull", name, "--insecure")
    assert pulled.returncode == 0, pulled.stderr
    out = pulled.stderr + pulled.stdout
    for line in ("pulling manifest", "verifying sha256 digest", "writing manifest", "success"):
        assert line in out

    src, dst = Store(a.models_dir), Store(b.models_dir)
    try:
        digest_a, manifest_a, body_a = src.get_manifest(name)
        digest_b, manifest_b, body_b = dst.get_manifest(name)
        assert digest_a == digest_b and body_a == body_b
        for desc in [manifest_a["config"], *manifest_a["layers"]]:
            assert dst.read_blob(desc["digest"]) == src.read_blob(desc["digest"])
    finally:
        src.close()
        dst.close()

    status, shown = b.request("POST", "/api/show", {"model": name})
    assert status == 200, shown
    assert shown["details"]["format"] == "gguf"
    assert "Be brief." in shown.get("system", "") or "Be brief." in shown.get("modelfile", "")
    status, gen = b.request(
        "POST", "/api/generate", {"model": name, "prompt": "hi", "stream": False, "options": {"num_predict": 3}}
    )
    assert status == 200, gen  # the pulled model loads and runs
    assert gen["done"] is True and gen["eval_count"] >= 1

    # The API: streamed lines, then stream:false gives one final object.
    lines = ndjson(b, "/api/pull", {"model": name, "insecure": True})
    assert lines[0] == {"status": "pulling manifest"} and lines[-1] == {"status": "success"}
    layer_lines = [line for line in lines if "digest" in line]
    assert layer_lines and all(set(line) == {"status", "digest", "total", "completed"} for line in layer_lines)
    assert all(line["status"] == "pulling " + line["digest"][7:19] for line in layer_lines)
    status, final = b.request("POST", "/api/pull", {"model": name, "insecure": True, "stream": False})
    assert (status, final) == (200, {"status": "success"})

    # Ollama's own Python client understands the streams.
    import ollama

    client = ollama.Client(host=b.base_url)
    parts = list(client.pull(name, insecure=True, stream=True))
    assert parts[0].status == "pulling manifest" and parts[-1].status == "success"
    assert any(p.digest and p.total for p in parts)
    assert ollama.Client(host=a.base_url).push(name, insecure=True).status == "success"
    status, final = a.request("POST", "/api/push", {"model": name, "insecure": True, "stream": False})
    assert (status, final) == (200, {"status": "success"})


def test_vision_model_push_pull_carries_the_projector(
    registry: DockerRegistry, daemons: tuple[Daemon, Daemon], tiny_chat_gguf: Path, tmp_path: Path
) -> None:
    """Issue 16: the projector layer travels through the registry; the pulled model takes images."""
    import base64
    import io

    from PIL import Image

    from ollamalike.testmodels_mm import write_tiny_projector

    a, b = daemons
    name = f"{registry.host}/e2e/vision:v1"
    proj = write_tiny_projector(tmp_path / "mmproj.gguf")
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(f"FROM {tiny_chat_gguf}\nADAPTER {proj}\n")
    assert a.cli("create", name, "-f", str(modelfile)).returncode == 0
    assert a.cli("push", name, "--insecure").returncode == 0
    pulled = b.cli("pull", name, "--insecure")
    assert pulled.returncode == 0, pulled.stderr
    src, dst = Store(a.models_dir), Store(b.models_dir)
    try:
        _, manifest_a, body_a = src.get_manifest(name)
        _, _, body_b = dst.get_manifest(name)
        assert body_a == body_b
        projectors = [d for d in manifest_a["layers"] if d["mediaType"] == "application/vnd.ollama.image.projector"]
        assert len(projectors) == 1 and dst.read_blob(projectors[0]["digest"]) == proj.read_bytes()
    finally:
        src.close()
        dst.close()
    status, shown = b.request("POST", "/api/show", {"model": name})
    assert status == 200 and "vision" in shown["capabilities"] and shown["projector_info"]["general.architecture"] == "clip"
    buf = io.BytesIO()
    Image.new("RGB", (24, 24), (255, 200, 0)).save(buf, format="JPEG")
    status, gen = b.request("POST", "/api/generate", {"model": name, "prompt": "hi", "stream": False,
                                                      "images": [base64.b64encode(buf.getvalue()).decode()],
                                                      "options": {"num_predict": 2}})
    assert status == 200 and gen["done"] is True, gen


def test_cli_progress_redraws_in_place_on_a_terminal(
    registry: DockerRegistry, daemons: tuple[Daemon, Daemon], tiny_chat_gguf: Path, tmp_path: Path
) -> None:
    import pexpect

    a, b = daemons
    name = f"{registry.host}/e2e/tty:v1"
    (tmp_path / "Modelfile").write_text(f"FROM {tiny_chat_gguf}\nSYSTEM terminal test\n")
    assert a.cli("create", name, "-f", str(tmp_path / "Modelfile")).returncode == 0
    status, _ = a.request("POST", "/api/push", {"model": name, "insecure": True, "stream": False})
    assert status == 200
    child = pexpect.spawn(
        sys.executable, ["-m", "ollamalike", "pull", name, "--insecure"], env=b.env, encoding="utf-8", timeout=120,
        dimensions=(24, 120),
    )
    child.expect(pexpect.EOF)
    child.close()
    out = child.before or ""
    assert child.exitstatus == 0, out
    assert "\x1b[2K" in out  # lines are cleared and redrawn, not appended
    assert re.search(r"pulling [0-9a-f]{12}\.\.\. 100% ▕█+▏ \d", out), out
    assert "success" in out


def test_pull_push_bad_inputs(registry: DockerRegistry, daemons: tuple[Daemon, Daemon]) -> None:
    _, b = daemons
    before = store_snapshot(b.models_dir)
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        ("/api/pull", {}, 400, "model is required"),
        ("/api/pull", {"model": 42}, 400, "model"),
        ("/api/pull", {"model": "../../etc/passwd"}, 400, "invalid model name"),
        ("/api/pull", {"model": "a/b/c/d"}, 400, "invalid model name"),
        ("/api/pull", {"model": "x", "insecure": "yes"}, 400, "insecure"),
        ("/api/pull", {"model": f"{registry.host}/nope/missing:tag", "insecure": True}, 502, "file does not exist"),
        ("/api/push", {"model": "never-created"}, 404, "not found"),
        ("/api/push", {"model": "hf.co/user/repo"}, 400, "hugging face"),
        ("/api/import", {}, 400, "path is required"),
        ("/api/import", {"path": "/nonexistent/dir"}, 400, "not found"),
    ]
    for path, body, code, text in cases:
        status, data = b.request("POST", path, {**body, "stream": False})
        assert_api_error(status, data, code, text)
    assert store_snapshot(b.models_dir) == before

    for args in (("pull", "bad name with spaces"), ("push", "no-such-model"), ("import-ollama", "/nonexistent/ollama")):
        bad = b.cli(*args)
        assert bad.returncode != 0, args
        assert bad.stderr.strip().splitlines()[-1].startswith("Error: "), bad.stderr
    remote = b.cli("import-ollama", str(b.home), env={"OLLAMALIKE_HOST": "10.9.8.7:11434"})
    assert remote.returncode != 0 and "on this machine" in remote.stderr


def _ollama_dir(src: Store, root: Path, names: list[str]) -> None:
    """Lay out an Ollama models directory holding ``names`` from ``src``."""
    for text in names:
        from ollamalike.names import ModelName

        name = ModelName.parse(text)
        _, manifest, body = src.get_manifest(name)
        path = root / "manifests" / name.host / name.namespace / name.model / name.tag
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        (root / "blobs").mkdir(parents=True, exist_ok=True)
        for desc in [manifest["config"], *manifest["layers"]]:
            target = root / "blobs" / desc["digest"].replace(":", "-")
            if not target.exists():
                shutil.copyfile(src.blob_path(desc["digest"]), target)


def test_import_ollama_directory(daemons: tuple[Daemon, Daemon], tiny_chat_q4_gguf: Path, tmp_path: Path) -> None:
    a, b = daemons
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(f"FROM {tiny_chat_q4_gguf}\nPARAMETER temperature 0.1\n")
    created = a.cli("create", "importme:latest", "-f", str(modelfile))
    assert created.returncode == 0, created.stderr
    modelfile.write_text(f"FROM {tiny_chat_q4_gguf}\nPARAMETER temperature 0.9\n")
    created = a.cli("create", "other/corrupt:v2", "-f", str(modelfile))
    assert created.returncode == 0, created.stderr
    src = Store(a.models_dir)
    src_root = a.models_dir
    ollama = tmp_path / "ollama-models"
    try:
        _ollama_dir(src, ollama, ["importme:latest"])
        # The second model gets its own corrupted copy of a blob: it must be refused.
        _, manifest, body = src.get_manifest("other/corrupt:v2")
    finally:
        src.close()
    corrupt_dir = tmp_path / "ollama-corrupt"
    shutil.copytree(ollama, corrupt_dir)
    mpath = corrupt_dir / "manifests" / "registry.ollama.ai" / "other" / "corrupt" / "v2"
    mpath.parent.mkdir(parents=True)
    mpath.write_bytes(body)
    shared = {p.name for p in (ollama / "blobs").iterdir()}
    own = [d["digest"].replace(":", "-") for d in manifest["layers"] if d["digest"].replace(":", "-") not in shared]
    assert own, "the second model must have a layer of its own"
    for blob in own:
        shutil.copyfile(Path(src_root) / "blobs" / blob, corrupt_dir / "blobs" / blob)
    victim = corrupt_dir / "blobs" / own[0]
    data = bytearray(victim.read_bytes())
    data[0] ^= 0xFF
    victim.write_bytes(bytes(data))

    done = b.cli("import-ollama", str(ollama))
    assert done.returncode == 0, done.stderr
    assert "imported importme:latest" in done.stdout + done.stderr
    dst = Store(b.models_dir)
    try:
        _, manifest_b, _ = dst.get_manifest("importme:latest")
        layer = manifest_b["layers"][0]["digest"]
        source = ollama / "blobs" / layer.replace(":", "-")
        # Same filesystem: the blob is a hard link to Ollama's file, not a copy.
        assert os.stat(dst.blob_path(layer)).st_ino == os.stat(source).st_ino
        status, shown = b.request("POST", "/api/show", {"model": "importme"})
        assert status == 200, shown

        again = b.cli("import-ollama", str(ollama))
        assert again.returncode == 0 and "skipping importme:latest" in again.stdout + again.stderr

        bad = b.cli("import-ollama", str(corrupt_dir))
        assert bad.returncode != 0
        assert "other/corrupt:v2" in bad.stderr and "corrupt" in bad.stderr
        from ollamalike.errors import ModelNotFound

        with pytest.raises(ModelNotFound):
            dst.get_manifest("other/corrupt:v2")
    finally:
        dst.close()

    status, data = b.request("POST", "/api/import", {"path": str(tmp_path / "Modelfile"), "stream": False})
    assert_api_error(status, data, 400, "not found")
