"""What this machine has to run models on: GPUs, CPU, memory and the compiled llama.cpp backend.

``discover(config)`` probes everything once (GPU tools with short timeouts, /proc or sysctl, and
``python -m ollamalike.runner.info`` in a subprocess so the daemon never imports llama_cpp);
``system(config, refresh=True)`` re-reads only free memory before a load. ``build_mismatch``
names the fix when a GPU is present but llama-cpp-python cannot use it. The memory planner is
``hardware.planner.plan_load``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import threading
from dataclasses import dataclass
from typing import Any

from ollamalike.config import Config
from ollamalike.hardware.cpu import CPU, cpu_info, free_memory
from ollamalike.hardware.discovery import GIB, GPU, Probe, discover_gpus

log = logging.getLogger("ollamalike.hardware")

BACKEND_TIMEOUT = 60.0  # importing llama_cpp on a busy machine can take a while
# llama.cpp backend name -> the GPU library it drives.
BACKEND_LIBRARY = {"cuda": "cuda", "rocm": "rocm", "hip": "rocm", "metal": "metal"}


@dataclass(frozen=True)
class SystemInfo:
    cpu: CPU
    gpus: tuple[GPU, ...]
    backend: dict[str, Any] | None = None  # runner.info's JSON; None when it could not run

    @property
    def gpu_offload(self) -> bool:
        return bool(self.backend and self.backend.get("gpu_offload"))

    @property
    def usable_gpus(self) -> tuple[GPU, ...]:
        """The GPUs the compiled backend can drive (none on a CPU-only build)."""
        if not self.gpu_offload or self.backend is None:
            return ()
        library = BACKEND_LIBRARY.get(str(self.backend.get("backend", "")).lower())
        return tuple(g for g in self.gpus if g.library == library)


def backend_info(config: Config, timeout: float = BACKEND_TIMEOUT) -> dict[str, Any] | None:
    """``python -m ollamalike.runner.info`` with the runner's interpreter; None when it fails."""
    argv = [config.runner_python, "-m", "ollamalike.runner.info"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError) as e:
        log.debug("runner.info: %s", e)
        return None
    if done.returncode != 0:
        log.debug("runner.info exited with %d: %s", done.returncode, done.stderr.strip()[-300:])
        return None
    try:
        data = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        log.debug("runner.info printed no JSON: %r", done.stdout[:200])
        return None
    return data if isinstance(data, dict) else None


def discover(config: Config, probe: Probe | None = None, backend: dict[str, Any] | None = None,
             with_backend: bool = True) -> SystemInfo:
    """Probe the machine now. ``with_backend=False`` skips the runner.info subprocess."""
    probe = probe or Probe()
    gpus = tuple(discover_gpus(probe, config.cuda_visible_devices, config.hip_visible_devices))
    if backend is None and with_backend:
        backend = backend_info(config)
    return SystemInfo(cpu_info(probe), gpus, backend)


_lock = threading.Lock()
_cache: dict[tuple[Any, ...], SystemInfo] = {}


def system(config: Config, refresh: bool = False, probe: Probe | None = None) -> SystemInfo:
    """The machine as the planner sees it. The first call probes everything; ``refresh=True``
    re-reads free RAM and GPU memory (a load is about to happen), keeping the backend."""
    key = (config.cuda_visible_devices, config.hip_visible_devices, config.runner_python)
    with _lock:
        cached = _cache.get(key)
        if cached is None:
            # The backend only matters when there is a GPU it might drive.
            found = discover(config, probe, with_backend=False)
            backend = backend_info(config) if found.gpus else None
            cached = dataclasses.replace(found, backend=backend)
        elif refresh:
            probe = probe or Probe()
            gpus = cached.gpus
            if any(g.library != "metal" for g in gpus):  # Metal's working set is fixed: no re-probe
                gpus = tuple(discover_gpus(probe, config.cuda_visible_devices, config.hip_visible_devices))
            available, swap = free_memory(probe)
            cpu = dataclasses.replace(cached.cpu, free_memory=available, free_swap=swap)
            cached = dataclasses.replace(cached, cpu=cpu, gpus=gpus)
        _cache[key] = cached
        return cached


def available_memory(probe: Probe | None = None) -> int | None:
    """RAM a new process can use right now (MemAvailable, or vm_stat on macOS); None where unknown.
    The one reader of free memory: the scheduler's eviction check and ``system(refresh=True)``."""
    available, _ = free_memory(probe or Probe())
    return available or None


def build_mismatch(info: SystemInfo) -> str | None:
    """A one-line warning with the fix when a GPU is present that the compiled backend cannot use."""
    if not info.gpus or info.backend is None:
        return None
    libraries = sorted({g.library for g in info.gpus})
    if info.usable_gpus:
        return None
    wanted = libraries[0]
    kinds = {"cuda": "an NVIDIA GPU", "rocm": "an AMD GPU", "metal": "Apple Silicon (Metal)"}
    built = str(info.backend.get("backend", "cpu")) if info.gpu_offload else "the CPU only"
    return (f"{kinds[wanted]} is present but llama-cpp-python was built for {built}, so models run on the CPU; "
            f"rebuild it with: OLLAMALIKE_BACKEND={wanted} ./install.sh --rebuild")


def describe(info: SystemInfo) -> list[str]:
    """One line per device, as ``serve`` logs them at start."""
    cpu = info.cpu
    lines = [f"cpu: {cpu.name or cpu.arch}, {cpu.physical_cores} cores, {cpu.threads} threads"
             f"{', ' + ' '.join(cpu.flags) if cpu.flags else ''}; "
             f"memory {cpu.total_memory / GIB:.1f} GiB total, {cpu.free_memory / GIB:.1f} GiB available"]
    for gpu in info.gpus:
        extra = ", ".join(x for x in (f"driver {gpu.driver}" if gpu.driver else "",
                                      f"compute {gpu.compute}" if gpu.compute else "") if x)
        lines.append(f"gpu {gpu.library}:{gpu.index} {gpu.name} ({gpu.id}): {gpu.total / GIB:.1f} GiB total, "
                     f"{gpu.free / GIB:.1f} GiB free{'; ' + extra if extra else ''}")
    return lines


def log_startup(config: Config) -> SystemInfo:
    """Probe (with the backend) and log what was found: called once when ``serve`` starts."""
    info = discover(config)
    with _lock:
        _cache[(config.cuda_visible_devices, config.hip_visible_devices, config.runner_python)] = info
    for line in describe(info):
        log.info("%s", line)
    backend = info.backend
    if backend is None:
        log.warning("could not determine llama.cpp's compiled backend (python -m ollamalike.runner.info failed)")
    else:
        log.info("llama.cpp backend: %s (gpu offload %s)", backend.get("backend"), "yes" if info.gpu_offload else "no")
    mismatch = build_mismatch(info)
    if mismatch:
        log.warning("%s", mismatch)
    return info


__all__ = ["CPU", "GPU", "Probe", "SystemInfo", "backend_info", "build_mismatch", "describe", "discover",
           "log_startup", "system"]
