"""The deployment files (issue 18): Kubernetes manifests under daemon/kubernetes/ and the Dockerfile.

The manifests are validated offline with ``kubernetes-validate`` (it ships the API schemas) in strict
mode, and checked against each other and against the daemon (probe paths, names, the drain timeout
vs the grace period; the ConfigMap is read by the real ``load_config``). There is no docker here:
the Dockerfile is parsed (``dockerfile-parse``) and its instructions checked (stages per variant,
non-root user, the store on a volume, every COPY source in the build context), its llama-cpp-python
flag step is RUN as written with pip stubbed out, and the package is built as a wheel from exactly
the files the Dockerfile copies.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from ollamalike.config import DEFAULT_PORT, load_config
from ollamalike.server.health import HEALTH_PATH, LIVE_PATH

ROOT = Path(__file__).resolve().parent.parent
KUBE = ROOT / "daemon" / "kubernetes"
K8S_VERSIONS = ("1.29.0", "1.37.0")  # the oldest and newest schema sets kubernetes-validate ships


# -- Kubernetes ------------------------------------------------------------------------------------
def _manifests() -> dict[str, dict[str, Any]]:
    """kind -> the resource, from every manifest but the kustomization."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(KUBE.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            assert doc["kind"] not in out, f"two {doc['kind']} resources"
            out[doc["kind"]] = doc
    return out


def test_the_manifests_are_all_there_and_the_kustomization_lists_them() -> None:
    kinds = _manifests()
    assert set(kinds) == {"Deployment", "Service", "PersistentVolumeClaim", "ConfigMap", "Secret"}
    kustomization = yaml.safe_load((KUBE / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in KUBE.glob("*.yaml")} - {"kustomization.yaml"}


def test_kubernetes_validate_ships_its_schemas() -> None:
    import kubernetes_validate

    schemas = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    for version in K8S_VERSIONS:
        assert (schemas / f"v{version}-local-strict" / "deployment-apps-v1.json").is_file()


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_manifest_validates_strictly(version: str) -> None:
    from kubernetes_validate import validate

    for kind, resource in _manifests().items():
        assert validate(resource, version, strict=True), kind


@pytest.mark.parametrize(("where", "change"), [
    ("probe field misspelt", lambda d: d["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]
     .update(paht="/api/health")),
    ("port as a word", lambda d: d["spec"]["template"]["spec"]["containers"][0]["ports"][0]
     .update(containerPort="eleven")),
    ("no selector", lambda d: d["spec"].pop("selector")),
])
def test_the_validator_rejects_a_broken_deployment(where: str, change: Any) -> None:
    from kubernetes_validate import ValidationError, validate

    broken = _manifests()["Deployment"]
    change(broken)
    with pytest.raises(ValidationError):
        validate(broken, K8S_VERSIONS[-1], strict=True)


def test_the_manifests_fit_together_and_fit_the_daemon() -> None:
    kinds = _manifests()
    deployment, service = kinds["Deployment"], kinds["Service"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    port = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert port == {"http": DEFAULT_PORT}
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    # Probes: readiness on the load endpoint, liveness and start-up on the one that touches nothing.
    assert container["readinessProbe"]["httpGet"] == {"path": HEALTH_PATH, "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": LIVE_PATH, "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": LIVE_PATH, "port": "http"}
    # Names that refer to each other.
    env_from = {next(iter(e.values()))["name"] for e in container["envFrom"]}
    assert env_from == {kinds["ConfigMap"]["metadata"]["name"], kinds["Secret"]["metadata"]["name"]}
    claims = [v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]]
    assert claims == [kinds["PersistentVolumeClaim"]["metadata"]["name"]]
    assert container["volumeMounts"] == [{"name": pod["volumes"][0]["name"], "mountPath": "/data"}]
    # Non-root, as the image's user.
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == _image_uid()
    # The daemon accepts the ConfigMap and the Secret as its environment, and the pod's grace period
    # outlasts the preStop pause plus the drain.
    env = {**kinds["ConfigMap"]["data"], **kinds["Secret"]["stringData"], "OLLAMALIKE_HOME": "/data"}
    config = load_config(env)
    assert config.api_keys and config.admin_keys
    pause = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["terminationGracePeriodSeconds"] >= pause + config.drain_timeout + 10
    assert "ollamalike" in config.allowed_hosts  # the Service's name passes the Host check


# -- Dockerfile --------------------------------------------------------------------------------------
def _dockerfile() -> Any:
    from dockerfile_parse import DockerfileParser

    return DockerfileParser(path=str(ROOT / "Dockerfile"))


def _instructions(stage_from: str | None = None) -> list[tuple[str, str]]:
    """(INSTRUCTION, value) pairs; with ``stage_from``, only those of the stage whose FROM value starts so."""
    out: list[tuple[str, str]] = []
    current: str | None = None
    for item in _dockerfile().structure:
        name, value = item["instruction"], item["value"]
        if name == "COMMENT":
            continue
        if name == "FROM":
            current = value
        if stage_from is None or (current or "").startswith(stage_from):
            out.append((name, value))
    return out


def _final_stage() -> list[tuple[str, str]]:
    return _instructions("runtime-${VARIANT}")


def _image_uid() -> int:
    runs = " ".join(v for k, v in _final_stage() if k == "RUN")
    match = re.search(r"useradd [^&]*--uid (\d+)[^&]* ollamalike", runs)
    assert match, "the final stage must create the ollamalike user with a fixed uid"
    return int(match.group(1))


def test_dockerfile_has_a_cpu_and_a_cuda_variant() -> None:
    froms = [v for k, v in _instructions() if k == "FROM"]
    stages = {v.split(" AS ")[-1] for v in froms if " AS " in v}
    assert {"build-cpu", "build-cuda", "runtime-cpu", "runtime-cuda", "build"} <= stages
    assert "build-${VARIANT} AS build" in froms and froms[-1] == "runtime-${VARIANT}"
    assert ("ARG", "VARIANT=cpu") in _instructions()
    assert any("nvidia/cuda:" in v and "-devel-" in v for v in froms)
    assert any("nvidia/cuda:" in v and "-runtime-" in v for v in froms)


def test_dockerfile_runs_as_a_non_root_user_with_the_store_on_a_volume() -> None:
    final = _final_stage()
    users = [v for k, v in final if k == "USER"]
    assert users and users[-1] not in ("root", "0") and users[-1] == "ollamalike"
    assert _image_uid() >= 1000
    env = " ".join(v for k, v in final if k == "ENV")
    assert "OLLAMALIKE_HOME=/data" in env and "OLLAMALIKE_MODELS=/data/models" in env
    assert f"OLLAMALIKE_HOST=0.0.0.0:{DEFAULT_PORT}" in env
    assert ("VOLUME", '["/data"]') in final
    assert ("EXPOSE", str(DEFAULT_PORT)) in final
    assert ("STOPSIGNAL", "SIGTERM") in final
    health = [v for k, v in final if k == "HEALTHCHECK"]
    assert health and LIVE_PATH in health[0]
    entry = [v for k, v in final if k in ("ENTRYPOINT", "CMD")]
    assert entry == ['["ollamalike"]', '["serve"]']


def _ignored(name: str) -> bool:
    """Docker's .dockerignore rule for a top-level path: the last pattern that matches decides."""
    ignored = False
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatchcase(name, pattern):
            ignored = not negate
    return ignored


def _copy_sources() -> list[str]:
    sources: list[str] = []
    for name, value in _instructions():
        if name in ("COPY", "ADD"):
            parts = [p for p in shlex.split(value) if not p.startswith("--")]
            if "--from=" in value:
                continue
            sources.extend(parts[:-1])
    return sources


def test_every_file_the_dockerfile_copies_exists_and_is_in_the_build_context() -> None:
    assert not any(k == "ADD" for k, _ in _instructions()), "COPY only: ADD fetches URLs and unpacks archives"
    sources = _copy_sources()
    assert sources == ["install.sh", "pyproject.toml", "README.md", "ollamalike"]
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not _ignored(source), f"{source} is excluded by .dockerignore"
    for heavy in (".venv", ".git", "tests", "bench", "docs"):
        assert _ignored(heavy), f"{heavy} should stay out of the build context"


def test_dockerfile_builds_llama_cpp_with_install_sh_flags_never_native() -> None:
    # Outside comments, the only "march=native" is the pattern of the refusal in the flag step.
    text = " ".join(v for _, v in _instructions())
    assert "march=native" not in text.replace("*march=native*)", "")
    assert "-DGGML_NATIVE=ON" not in text
    (step,) = [v for k, v in _instructions("build-${VARIANT} AS build") if k == "RUN" and "--print-build-flags" in v]
    assert "install.sh --print-build-flags" in step and "--no-binary llama-cpp-python" in step


def _arg_default(name: str) -> str:
    for k, v in _instructions():
        if k == "ARG" and v.startswith(name + "="):
            return shlex.split(v.partition("=")[2])[0]
    raise AssertionError(f"no ARG {name} with a default")


@pytest.mark.parametrize("variant", ["cpu", "cuda"])
def test_the_dockerfile_flag_step_runs_as_written(variant: str, tmp_path: Path) -> None:
    """RUN the flag step of the build stage here, with /opt/ollamalike a stub whose pip records what
    it was asked to build (the real compile needs docker and a long build)."""
    (step,) = [v for k, v in _instructions("build-${VARIANT} AS build") if k == "RUN" and "--print-build-flags" in v]
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    os.symlink(sys.executable, venv / "bin" / "python")
    record = tmp_path / "pip-calls"
    pip = venv / "bin" / "pip"
    pip.write_text(f'#!/bin/sh\nprintf "%s | %s\\n" "${{CMAKE_ARGS:-}}" "$*" >> {shlex.quote(str(record))}\n')
    pip.chmod(0o755)
    context = tmp_path / "src"
    context.mkdir()
    shutil.copy(ROOT / "install.sh", context / "install.sh")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "VARIANT": variant,
           "CPU_FLAGS": _arg_default("CPU_FLAGS"), "CUDA_ARCHITECTURES": _arg_default("CUDA_ARCHITECTURES")}
    script = step.replace("/opt/ollamalike", str(venv))
    result = subprocess.run(["sh", "-c", script], cwd=context, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    calls = record.read_text().splitlines()
    assert len(calls) == 2 and calls[-1].endswith("install --no-cache-dir --no-binary llama-cpp-python /src"), calls
    flags = calls[-1].split(" | ")[0].split()
    assert "-DGGML_NATIVE=OFF" in flags and "-DGGML_AMX_INT8=OFF" in flags
    assert "-DGGML_AVX2=ON" in flags and "-DGGML_AVX512=OFF" in flags  # the baseline, not this CPU
    assert not any("native" in f.lower() and f != "-DGGML_NATIVE=OFF" for f in flags)
    assert ("-DGGML_CUDA=ON" in flags) == (variant == "cuda")
    if variant == "cuda":
        assert "-DCMAKE_CUDA_ARCHITECTURES=75;80;86;89;90" in flags


def test_the_package_builds_from_exactly_what_the_dockerfile_copies(tmp_path: Path) -> None:
    context = tmp_path / "src"
    context.mkdir()
    for source in _copy_sources():
        src = ROOT / source
        if src.is_dir():
            shutil.copytree(src, context / source, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(src, context / source)
    out = tmp_path / "wheels"
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                             "-w", str(out), str(context)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    (wheel,) = out.glob("ollamalike-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "ollamalike/server/health.py" in names and "ollamalike/cli/serve.py" in names
    assert any(n.startswith("ollamalike/template/named/") for n in names), "package data missing"
    assert not any(n.startswith("tests/") for n in names)
