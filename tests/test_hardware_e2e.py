"""The real CPU path on this machine (it has no GPU): ``ollamalike info``, runner.info, the
scheduler's plan for a tiny model, /api/ps and ``ollamalike ps`` through the real daemon, and the
devices ``serve`` logs at start.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ollamalike import hardware
from ollamalike.config import load_config
from ollamalike.gguf_info import read_gguf_info
from ollamalike.scheduler.plan import layout_load, plan_load
from tests.daemon import Daemon
from tests.fakes import resolved_model
from tests.infer_helpers import create_model

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ollamalike", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})}, cwd=REPO)


def test_runner_info_reports_the_cpu_build() -> None:
    done = subprocess.run([sys.executable, "-m", "ollamalike.runner.info"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["backend"] == "cpu" and info["gpu_offload"] is False
    assert "CPU" in info["backends"] and any(d["type"] == "cpu" for d in info["devices"])
    assert info["system_info"].startswith("CPU :") and info["llama_cpp_python"]
    through_hardware = hardware.backend_info(load_config())
    assert through_hardware is not None and through_hardware["backend"] == "cpu"


def test_info_command_on_this_machine() -> None:
    done = run_cli("info")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    with open("/proc/cpuinfo") as f:
        threads = sum(1 for line in f if line.startswith("processor"))
    assert f"{threads} threads" in out
    assert "GPUs:     none found" in out
    assert "Backend:  llama.cpp cpu (llama-cpp-python 0.3.36, GPU offload: no)" in out
    assert "Context:  4096 tokens by default (no usable VRAM)" in out
    assert "Warning" not in out  # no GPU, so a CPU build is no mismatch


def test_info_json_and_configured_context() -> None:
    done = run_cli("info", "--json", env={"OLLAMALIKE_CONTEXT_LENGTH": "8192", "CUDA_VISIBLE_DEVICES": "-1"})
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["gpus"] == [] and data["backend"]["backend"] == "cpu" and data["mismatch"] is None
    assert data["default_context_length"] == 8192
    assert data["cpu"]["threads"] >= 1 and data["cpu"]["total_memory"] > data["cpu"]["free_memory"] > 0


def test_info_does_not_import_llama_cpp_or_aiohttp() -> None:
    code = ("import sys\nfrom ollamalike.cli import cli\n"
            "try:\n    cli.main(args=['info'], prog_name='ollamalike', standalone_mode=False)\n"
            "except SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('aiohttp', 'llama_cpp')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_info_with_a_broken_runner_python_still_prints_the_machine() -> None:
    done = run_cli("info", env={"OLLAMALIKE_RUNNER_PYTHON": "/nonexistent/python"})
    assert done.returncode == 0, done.stderr
    assert "Backend:  unknown" in done.stdout and "CPU:" in done.stdout


def test_scheduler_plans_a_tiny_model_on_the_cpu(tiny_chat_q4_gguf: Path) -> None:
    config = load_config()
    info = read_gguf_info(tiny_chat_q4_gguf)
    model = resolved_model(name="tiny:latest", model_path=tiny_chat_q4_gguf, info=info)
    plan = plan_load(model, {}, config)
    assert plan.spec.gpu_layers == -1  # auto until the load lays it out
    laid = layout_load(plan, model, config)
    assert (laid.processor, laid.gpu_layers, laid.size_vram) == ("100% CPU", 0, 0)
    assert laid.spec.gpu_layers == 0 and laid.size > info.tensor_bytes
    assert laid.num_ctx == plan.num_ctx == min(4096, info.context_length or 4096)


@pytest.mark.e2e
def test_daemon_logs_devices_and_ps_shows_cpu(daemon: Daemon, tiny_chat_q4_gguf: Path) -> None:
    create_model(daemon, "tiny", f"FROM {tiny_chat_q4_gguf}\n", daemon.home)
    status, body = daemon.request("POST", "/api/generate", {"model": "tiny", "prompt": "hi", "stream": False,
                                                             "options": {"num_predict": 2}})
    assert status == 200, body
    status, ps = daemon.request("GET", "/api/ps")
    assert status == 200
    (entry,) = ps["models"]
    assert entry["size"] > 0 and entry["size_vram"] == 0
    result = daemon.cli("ps")
    assert result.returncode == 0, result.stderr
    assert "100% CPU" in result.stdout.splitlines()[1]
    status, version = daemon.request("GET", "/api/version")
    assert status == 200 and set(version) == {"version"}
    deadline = time.monotonic() + 60  # serve logs the devices once runner.info has answered
    while "llama.cpp backend" not in daemon.logs() and time.monotonic() < deadline:
        time.sleep(0.1)
    logs = daemon.logs()
    assert "cpu: " in logs and "llama.cpp backend: cpu (gpu offload no)" in logs
    assert "tiny:latest: 0 layers on the GPU" in logs and "100% CPU" in logs
