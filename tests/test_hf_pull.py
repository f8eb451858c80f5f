"""Hugging Face pulls through the REAL daemon and huggingface_hub, against a local fake Hub (HF_ENDPOINT).

Covers quantization choice (explicit, ``latest`` fallback, unknown quant listing what exists,
split GGUFs pulled shard by shard into several model layers), the LFS sha256 check, hard-linking from the HF cache, the template layer
from detection, ``FROM hf.co/...`` in a Modelfile, and unknown repositories.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ollamalike.registry.hf import available_quants, choose_gguf
from ollamalike.store import Store
from tests.daemon import Daemon, start_daemon
from tests.helpers import assert_api_error
from tests.registry_server import ThreadedServer, fake_hub
from tests.test_convert_split import split_gguf

REPO = "tester/Tiny-GGUF"
VISION_REPO = "tester/Tiny-Vision-GGUF"
HF_TOKEN = "hf_localtesttoken"
SEEN_AUTH: list[str] = []


@pytest.mark.parametrize(
    ("files", "tag", "expected"),
    [
        (["a/model-Q4_K_M.gguf", "model-Q4_K_M.gguf", "model-Q8_0.gguf"], "latest", "model-Q4_K_M.gguf"),
        (["model.q4_k_m.gguf", "model.Q8_0.gguf"], "Q8_0", "model.Q8_0.gguf"),
        (["model-Q4_K_M.gguf", "model-Q4_K_S.gguf"], "q4_k_s", "model-Q4_K_S.gguf"),
        (["README.md", "only-F16.gguf"], "latest", "only-F16.gguf"),
        (["b-Q8_0.gguf", "a-F16.gguf", "mmproj-F16.gguf"], "latest", "a-F16.gguf"),
        (["model-Q4_K_M.gguf", "model-IQ4_XS.gguf"], "iq4_xs", "model-IQ4_XS.gguf"),
        (["m-Q8_0-00002-of-00002.gguf", "m-Q8_0-00001-of-00002.gguf"], "Q8_0", "m-Q8_0-00001-of-00002.gguf"),
    ],
)
def test_choose_gguf(files: list[str], tag: str, expected: str) -> None:
    assert choose_gguf(files, tag) == expected


@pytest.mark.parametrize(
    ("files", "tag", "message"),
    [
        (["README.md"], "latest", "no GGUF files"),
        (["m-Q4_K_M.gguf", "m-Q8_0.gguf"], "Q5_K_M", "available: Q4_K_M, Q8_0"),
        (["m-Q4_K_M.gguf"], "Q4_K", "available: Q4_K_M"),  # a prefix is not a match
        (["m-Q8_0-00002-of-00002.gguf"], "Q8_0", "not a first shard"),
    ],
)
def test_choose_gguf_errors(files: list[str], tag: str, message: str) -> None:
    from ollamalike.errors import BadRequest

    with pytest.raises(BadRequest, match=message):
        choose_gguf(files, tag)


def test_available_quants_labels() -> None:
    assert available_quants(["x-Q4_K_M.gguf", "x.q8_0.gguf", "x-BF16.gguf", "weird.gguf"]) == [
        "Q4_K_M",
        "Q8_0",
        "BF16",
        "weird.gguf",
    ]


def _renamed(source: Path, target: Path) -> Path:
    target.write_bytes(source.read_bytes())
    return target


@pytest.fixture(scope="module")
def hub(tiny_chat_gguf: Path, tiny_chat_q4_gguf: Path, tiny_models_dir: Path,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    from ollamalike.testmodels_mm import write_tiny_projector

    projector = write_tiny_projector(tiny_models_dir / "mmproj-hf-tiny.gguf").read_bytes()
    tmp = tmp_path_factory.mktemp("hf-split")
    files = {
        "README.md": b"# tiny\n",
        "tiny-F32.gguf": tiny_chat_gguf.read_bytes(),
        "tiny-Q4_0.gguf": tiny_chat_q4_gguf.read_bytes(),
        # A split quant: real shards of the F32 file; and a split with its last shard missing.
        **{p.name: p.read_bytes() for p in split_gguf(_renamed(tiny_chat_gguf, tmp / "tiny-Q8_0.gguf"), tmp / "split", 3)},
        "tiny-Q6_K-00001-of-00002.gguf": b"GGUF" + b"\0" * 2000,
    }
    vision = {"tiny-Q4_0.gguf": tiny_chat_q4_gguf.read_bytes(), "mmproj-tiny-F16.gguf": projector,
              "mmproj-tiny-F32.gguf": projector[:-1] + b"x"}  # not the one taken: the F16 is
    server = ThreadedServer(fake_hub({REPO: files, VISION_REPO: vision}, seen_auth=SEEN_AUTH))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def daemon(hub: ThreadedServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    home = tmp_path_factory.mktemp("hf-home")
    env = {"HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "HF_HOME": str(home / "hf"), "HF_TOKEN": HF_TOKEN}
    d = start_daemon(home, env)
    yield d
    d.stop()


def test_pull_explicit_quant_links_from_cache(daemon: Daemon, tiny_chat_q4_gguf: Path) -> None:
    done = daemon.cli("pull", f"hf.co/{REPO}:Q4_0")
    assert done.returncode == 0, done.stderr
    out = done.stderr + done.stdout
    assert "pulling manifest" in out and "success" in out
    digest = "sha256:" + hashlib.sha256(tiny_chat_q4_gguf.read_bytes()).hexdigest()
    store = Store(daemon.models_dir)
    try:
        _, manifest, _ = store.get_manifest(f"hf.co/{REPO}:Q4_0")
        media = {layer["mediaType"]: layer for layer in manifest["layers"]}
        assert media["application/vnd.ollama.image.model"]["digest"] == digest
        # Not copied: the store's blob is the HF cache's file (same inode).
        assert os.stat(store.blob_path(digest)).st_nlink >= 2
        from ollamalike.gguf_info import read_gguf_info
        from ollamalike.template import detect_template

        named = detect_template(read_gguf_info(tiny_chat_q4_gguf).chat_template or "")
        if named is None:
            assert "application/vnd.ollama.image.template" not in media
        else:
            template = store.read_blob(media["application/vnd.ollama.image.template"]["digest"]).decode()
            assert template == named.template
            params = store.read_blob(media["application/vnd.ollama.image.params"]["digest"])
            assert b'"stop"' in params
    finally:
        store.close()
    status, shown = daemon.request("POST", "/api/show", {"model": f"hf.co/{REPO}:Q4_0"})
    assert status == 200, shown
    assert shown["details"]["format"] == "gguf"
    status, gen = daemon.request(
        "POST",
        "/api/generate",
        {"model": f"hf.co/{REPO}:Q4_0", "prompt": "hi", "stream": False, "options": {"num_predict": 2}},
    )
    assert status == 200 and gen["done"] is True, gen


def test_pull_latest_falls_back_to_first_gguf(daemon: Daemon, tiny_chat_gguf: Path) -> None:
    import json
    import urllib.request

    req = urllib.request.Request(
        daemon.base_url + "/api/pull", data=json.dumps({"model": f"hf.co/{REPO}"}).encode(), method="POST"
    )
    with urllib.request.urlopen(req, timeout=120) as resp:
        lines = [json.loads(line) for line in resp.read().splitlines() if line.strip()]
    sha = hashlib.sha256(tiny_chat_gguf.read_bytes()).hexdigest()
    assert lines[0] == {"status": "pulling manifest"} and lines[-1] == {"status": "success"}
    layer = [line for line in lines if line.get("status") == f"pulling {sha[:12]}"]
    assert layer and layer[-1]["completed"] == layer[-1]["total"] == tiny_chat_gguf.stat().st_size
    assert layer[-1]["digest"] == f"sha256:{sha}"
    assert {"verifying sha256 digest", "writing manifest"} <= {line["status"] for line in lines}
    # HF_TOKEN from the daemon's environment reached the Hub.
    assert f"Bearer {HF_TOKEN}" in SEEN_AUTH
    store = Store(daemon.models_dir)
    try:
        _, manifest, _ = store.get_manifest(f"hf.co/{REPO}:latest")
    finally:
        store.close()
    model = [layer for layer in manifest["layers"] if layer["mediaType"].endswith(".model")][0]
    assert model["digest"][7:] == hashlib.sha256(tiny_chat_gguf.read_bytes()).hexdigest()


@pytest.mark.parametrize(("files", "model", "expected"), [
    (["m-Q4_K_M.gguf", "mmproj-m-F16.gguf", "mmproj-m-Q4_K_M.gguf"], "m-Q4_K_M.gguf", "mmproj-m-Q4_K_M.gguf"),
    (["m-Q8_0.gguf", "mmproj-m-F32.gguf", "mmproj-m-F16.gguf"], "m-Q8_0.gguf", "mmproj-m-F16.gguf"),
    (["m-Q8_0.gguf", "mmproj-model-bf16.gguf"], "m-Q8_0.gguf", "mmproj-model-bf16.gguf"),
    (["m-Q8_0.gguf", "README.md"], "m-Q8_0.gguf", None),
])
def test_choose_mmproj(files: list[str], model: str, expected: str | None) -> None:
    from ollamalike.registry.hf import choose_mmproj

    assert choose_mmproj(files, model) == expected


@pytest.mark.e2e
def test_pull_vision_repo_takes_its_mmproj(daemon: Daemon, tiny_models_dir: Path) -> None:
    import base64
    import io

    from PIL import Image

    done = daemon.cli("pull", f"hf.co/{VISION_REPO}:Q4_0")
    assert done.returncode == 0, done.stderr
    projector = (tiny_models_dir / "mmproj-hf-tiny.gguf").read_bytes()
    store = Store(daemon.models_dir)
    try:
        _, manifest, _ = store.get_manifest(f"hf.co/{VISION_REPO}:Q4_0")
    finally:
        store.close()
    kinds = [(layer["mediaType"], layer["digest"]) for layer in manifest["layers"]]
    assert ("application/vnd.ollama.image.projector", "sha256:" + hashlib.sha256(projector).hexdigest()) in kinds
    assert sum(1 for k, _ in kinds if k.endswith(".projector")) == 1
    status, shown = daemon.request("POST", "/api/show", {"model": f"hf.co/{VISION_REPO}:Q4_0"})
    assert status == 200 and "vision" in shown["capabilities"], shown
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (0, 128, 255)).save(buf, format="PNG")
    status, gen = daemon.request("POST", "/api/generate", {
        "model": f"hf.co/{VISION_REPO}:Q4_0", "prompt": "what is it?", "stream": False,
        "images": [base64.b64encode(buf.getvalue()).decode()], "options": {"num_predict": 2}})
    assert status == 200 and gen["done"] is True, gen
    # A repository without an mmproj gives no projector (and no vision).
    assert daemon.cli("pull", f"hf.co/{REPO}:Q4_0").returncode == 0
    status, plain = daemon.request("POST", "/api/show", {"model": f"hf.co/{REPO}:Q4_0"})
    assert status == 200 and "vision" not in plain["capabilities"] and "projector_info" not in plain


def test_hf_errors(daemon: Daemon) -> None:
    status, data = daemon.request("POST", "/api/pull", {"model": f"hf.co/{REPO}:Q5_K_M", "stream": False})
    assert_api_error(status, data, 400, "available: F32, Q4_0, Q6_K, Q8_0")
    status, data = daemon.request("POST", "/api/pull", {"model": f"hf.co/{REPO}:Q6_K", "stream": False})
    assert_api_error(status, data, 400, "split GGUF shard tiny-Q6_K-00002-of-00002.gguf is missing from this repository")
    status, data = daemon.request("POST", "/api/pull", {"model": "hf.co/nobody/nothing", "stream": False})
    assert_api_error(status, data, 404, "not found")
    bad = daemon.cli("pull", f"hf.co/{REPO}:Q5_K_M")
    assert bad.returncode != 0 and bad.stderr.strip().splitlines()[-1].startswith("Error: ")


def test_modelfile_from_hf_pulls_base(daemon: Daemon, tmp_path: Path) -> None:
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(f"FROM hf.co/{REPO}:F32\nSYSTEM You are a test.\n")
    done = daemon.cli("create", "from-hf", "-f", str(modelfile))
    assert done.returncode == 0, done.stderr
    status, shown = daemon.request("POST", "/api/show", {"model": "from-hf"})
    assert status == 200, shown
    assert "You are a test." in shown.get("system", "") + shown.get("modelfile", "")
    status, shown = daemon.request("POST", "/api/show", {"model": f"hf.co/{REPO}:F32"})
    assert status == 200, shown  # the base was pulled and tagged on the way



def test_split_quant_pulls_every_shard_as_a_model_layer(daemon: Daemon, tiny_chat_gguf: Path, tmp_path: Path) -> None:
    """hf.co/...:<quant> whose file is split: each shard becomes a model layer, in shard order, loaded
    with llama.cpp's split loading, and it answers exactly as the unsplit file does."""
    pulled = daemon.cli("pull", f"hf.co/{REPO}:Q8_0")
    assert pulled.returncode == 0, pulled.stderr
    whole = daemon.cli("pull", f"hf.co/{REPO}:F32")
    assert whole.returncode == 0, whole.stderr
    shards = split_gguf(_renamed(tiny_chat_gguf, tmp_path / "tiny-Q8_0.gguf"), tmp_path / "split", 3)
    store = Store(daemon.models_dir)
    try:
        _, manifest, _ = store.get_manifest(f"hf.co/{REPO}:Q8_0")
    finally:
        store.close()
    models = [x["digest"] for x in manifest["layers"] if x["mediaType"] == "application/vnd.ollama.image.model"]
    assert models == ["sha256:" + hashlib.sha256(p.read_bytes()).hexdigest() for p in shards]
    answers = []
    for tag in ("Q8_0", "F32"):
        status, gen = daemon.request("POST", "/api/generate", {
            "model": f"hf.co/{REPO}:{tag}", "prompt": "Once upon a time", "raw": True, "stream": False,
            "options": {"temperature": 0, "num_predict": 12, "seed": 3}})
        assert status == 200 and gen["done"] is True, gen
        answers.append(gen["response"])
    assert answers[0] == answers[1]
