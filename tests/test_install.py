"""install.sh builds llama.cpp so quantized models run everywhere: no native/AMX, flags key the wheel cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _print_flags(**env: str) -> dict[str, str]:
    out = subprocess.run(["bash", str(ROOT / "install.sh"), "--print-build-flags"], check=True,
                         capture_output=True, text=True, env={**os.environ, **env}, timeout=60).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_cpu_build_is_portable_and_never_uses_amx() -> None:
    flags = _print_flags(OLLAMALIKE_BACKEND="cpu")
    args = flags["cmake_args"].split()
    assert flags["backend"] == "cpu"
    assert "-DGGML_NATIVE=OFF" in args
    for amx in ("-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF"):
        assert amx in args
    assert not any(a.startswith("-DGGML_AMX") and a.endswith("=ON") for a in args)
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if " avx2 " in cpuinfo:
        assert "-DGGML_AVX2=ON" in args  # the CPU's other instruction sets stay on


def test_wheel_cache_is_keyed_by_the_flags() -> None:
    plain = _print_flags(OLLAMALIKE_BACKEND="cpu")["wheel_dir"]
    other = _print_flags(OLLAMALIKE_BACKEND="cpu", LLAMA_CMAKE_ARGS="-DGGML_NATIVE=ON")["wheel_dir"]
    cuda = _print_flags(OLLAMALIKE_BACKEND="cuda")["wheel_dir"]
    assert len({plain, other, cuda}) == 3


def test_bad_backend_and_option_are_clear_errors() -> None:
    bad = subprocess.run(["bash", str(ROOT / "install.sh"), "--print-build-flags"], capture_output=True, text=True,
                         env={**os.environ, "OLLAMALIKE_BACKEND": "tpu"}, timeout=60)
    assert bad.returncode != 0 and "OLLAMALIKE_BACKEND must be" in bad.stderr
    unknown = subprocess.run(["bash", str(ROOT / "install.sh"), "--frobnicate"], capture_output=True, text=True,
                             timeout=60)
    assert unknown.returncode != 0 and "unknown option --frobnicate" in unknown.stderr


def test_installed_build_has_no_amx() -> None:
    """The build in use reports its CPU features; AMX must be off (tests/test_runner_smoke.py runs Q4_0)."""
    info = subprocess.run([sys.executable, "-m", "ollamalike.runner.info"], check=True, capture_output=True,
                          text=True, timeout=120).stdout
    system_info = json.loads(info)["system_info"]
    assert "CPU" in system_info
    assert "AMX_INT8 = 1" not in system_info and "AMX = 1" not in system_info


@pytest.mark.parametrize("flag", ["--dev", "--reference", "--no-reference", "--rebuild", "--service", "--uninstall",
                                  "--print-build-flags"])
def test_help_lists_every_option(flag: str) -> None:
    out = subprocess.run(["bash", str(ROOT / "install.sh"), "--help"], check=True, capture_output=True, text=True,
                         timeout=30).stdout
    assert flag in out
