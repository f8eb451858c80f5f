"""GPU discovery: NVIDIA (NVML, else nvidia-smi), AMD (rocm-smi, else sysfs) and Apple Metal.

Every probe goes through a ``Probe`` (commands with a short timeout, file reads, the NVML
module), so tests feed recorded outputs of real machines. A probe that fails, times out or
prints something unexpected means "no such GPU" plus a debug log line, never an exception.
"""

from __future__ import annotations

import json
import logging
import platform
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("ollamalike.hardware")

MIB = 1024 * 1024
GIB = 1024 * MIB
COMMAND_TIMEOUT = 5.0


@dataclass(frozen=True)
class GPU:
    library: str  # "cuda" | "rocm" | "metal": the llama.cpp backend that drives it
    index: int  # the driver's index, before any *_VISIBLE_DEVICES filtering
    id: str  # UUID where the driver has one, else the index as text
    name: str
    total: int  # bytes
    free: int  # bytes
    driver: str = ""
    compute: str = ""  # CUDA compute capability "8.9", or the gfx target "gfx1100"


def run_command(argv: list[str], timeout: float = COMMAND_TIMEOUT) -> str | None:
    """stdout of a command, or None when it is missing, fails or takes longer than ``timeout``."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError) as e:
        log.debug("%s: %s", argv[0], e)
        return None
    if done.returncode != 0:
        log.debug("%s exited with %d: %s", argv[0], done.returncode, done.stderr.strip()[:200])
        return None
    return done.stdout


def read_text(path: str) -> str | None:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return None


def _import_nvml() -> Any:
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml


@dataclass
class Probe:
    """Where discovery reads the machine; tests replace any part with recorded data."""

    run: Callable[[list[str]], str | None] = run_command
    read: Callable[[str], str | None] = read_text
    glob: Callable[[str], list[str]] = lambda pattern: sorted(str(p) for p in Path("/").glob(pattern.lstrip("/")))
    nvml: Callable[[], Any] = _import_nvml
    system: str = platform.system()
    machine: str = platform.machine()


# -- NVIDIA ---------------------------------------------------------------------------------
NVIDIA_SMI_QUERY = [
    "nvidia-smi",
    "--query-gpu=index,uuid,name,memory.total,memory.free,driver_version,compute_cap",
    "--format=csv,noheader,nounits",
]


def nvidia_from_nvml(nvml: Any) -> list[GPU] | None:
    """GPUs through NVML; None when the library or driver is not usable (then nvidia-smi is tried)."""
    try:
        nvml.nvmlInit()
    except Exception as e:  # NVMLError_LibraryNotFound, DriverNotLoaded …
        log.debug("NVML unavailable: %s", e)
        return None
    try:
        driver = _text(nvml.nvmlSystemGetDriverVersion())
        gpus = []
        for i in range(int(nvml.nvmlDeviceGetCount())):
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            mem = nvml.nvmlDeviceGetMemoryInfo(handle)
            try:
                major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
                compute = f"{major}.{minor}"
            except Exception:
                compute = ""
            gpus.append(GPU("cuda", i, _text(nvml.nvmlDeviceGetUUID(handle)), _text(nvml.nvmlDeviceGetName(handle)),
                            int(mem.total), int(mem.free), driver, compute))
        return gpus
    except Exception as e:
        log.debug("NVML query failed: %s", e)
        return None
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception as e:
            log.debug("nvmlShutdown: %s", e)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def parse_nvidia_smi(text: str) -> list[GPU]:
    """Rows of ``index, uuid, name, memory.total, memory.free, driver, compute_cap`` (MiB, no units)."""
    gpus: list[GPU] = []
    for line in text.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 7:
            continue
        # A GPU name may itself contain a comma: the fixed fields are at both ends.
        index, uuid, total, free, driver, compute = fields[0], fields[1], fields[-4], fields[-3], fields[-2], fields[-1]
        name = ", ".join(fields[2:-4])
        try:
            gpus.append(GPU("cuda", int(index), uuid, name, int(float(total)) * MIB, int(float(free)) * MIB,
                            driver, "" if compute.startswith("[") else compute))
        except ValueError:
            log.debug("nvidia-smi: unparsable line %r", line)
    return gpus


def nvidia_gpus(probe: Probe) -> list[GPU]:
    nvml = probe.nvml()
    if nvml is not None:
        found = nvidia_from_nvml(nvml)
        if found is not None:
            return found
    text = probe.run(NVIDIA_SMI_QUERY)
    return parse_nvidia_smi(text) if text else []


# -- AMD ------------------------------------------------------------------------------------
ROCM_SMI_QUERY = ["rocm-smi", "--showmeminfo", "vram", "--showproductname", "--showuniqueid", "--json"]


def parse_rocm_smi(text: str) -> list[GPU]:
    """``rocm-smi --showmeminfo vram --showproductname --showuniqueid --json`` (one object per card)."""
    try:
        data = json.loads(text)
    except ValueError:
        log.debug("rocm-smi: output is not JSON")
        return []
    gpus: list[GPU] = []
    if not isinstance(data, dict):
        return gpus
    for key, card in data.items():
        m = re.fullmatch(r"card(\d+)", key)
        if not m or not isinstance(card, dict):
            continue
        try:
            total = int(card["VRAM Total Memory (B)"])
            used = int(card["VRAM Total Used Memory (B)"])
        except (KeyError, ValueError, TypeError):
            continue
        index = int(m.group(1))
        name = str(card.get("Card Series") or card.get("Card series") or card.get("Card model") or "AMD GPU")
        uid = str(card.get("Unique ID") or index)
        gpus.append(GPU("rocm", index, uid, name, total, max(0, total - used), "",
                        str(card.get("GFX Version") or "")))
    return sorted(gpus, key=lambda g: g.index)


def amd_from_sysfs(probe: Probe) -> list[GPU]:
    """amdgpu's /sys/class/drm/card*/device/mem_info_vram_* files (no ROCm tools installed)."""
    gpus: list[GPU] = []
    for device in probe.glob("/sys/class/drm/card*/device"):
        m = re.search(r"card(\d+)/device$", device)
        if not m or (probe.read(f"{device}/vendor") or "").strip() != "0x1002":
            continue
        total_text, used_text = probe.read(f"{device}/mem_info_vram_total"), probe.read(f"{device}/mem_info_vram_used")
        try:
            total, used = int((total_text or "").strip()), int((used_text or "").strip())
        except ValueError:
            continue
        if total <= 0:
            continue  # an APU without dedicated VRAM, or a display-only card
        name = (probe.read(f"{device}/product_name") or "").strip() or "AMD GPU"
        uid = (probe.read(f"{device}/unique_id") or "").strip() or str(len(gpus))
        gpus.append(GPU("rocm", len(gpus), uid, name, total, max(0, total - used)))
    return gpus


def amd_gpus(probe: Probe) -> list[GPU]:
    text = probe.run(ROCM_SMI_QUERY)
    found = parse_rocm_smi(text) if text else []
    return found or amd_from_sysfs(probe)


# -- Apple Metal ----------------------------------------------------------------------------
def parse_sysctl(text: str) -> dict[str, str]:
    """``sysctl name...`` output ("hw.memsize: 17179869184") as a dict."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def metal_working_set(ram: int) -> int:
    """Metal's recommendedMaxWorkingSetSize, which llama.cpp uses as the GPU's memory: about 2/3 of
    RAM on machines up to 36 GiB and 3/4 above."""
    return ram * 2 // 3 if ram <= 36 * GIB else ram * 3 // 4


def parse_system_profiler_gpu(text: str) -> tuple[str, str]:
    """(chipset model, GPU core count) from ``system_profiler SPDisplaysDataType``."""
    model = re.search(r"Chipset Model:\s*(.+)", text)
    cores = re.search(r"Total Number of Cores:\s*(\d+)", text)
    return (model.group(1).strip() if model else "", cores.group(1) if cores else "")


def metal_gpus(probe: Probe) -> list[GPU]:
    if probe.system != "Darwin" or probe.machine != "arm64":
        return []  # Intel Macs: llama.cpp's Metal backend is not worth it; they run on the CPU
    values = parse_sysctl(probe.run(["sysctl", "hw.memsize"]) or "")
    try:
        ram = int(values["hw.memsize"])
    except (KeyError, ValueError):
        return []
    model, cores = parse_system_profiler_gpu(probe.run(["system_profiler", "SPDisplaysDataType"]) or "")
    name = model or "Apple Silicon GPU"
    if cores:
        name = f"{name} ({cores} GPU cores)"
    size = metal_working_set(ram)
    return [GPU("metal", 0, "0", name, size, size)]


# -- *_VISIBLE_DEVICES ----------------------------------------------------------------------
def filter_visible(gpus: list[GPU], visible: str | None) -> list[GPU]:
    """Apply CUDA_VISIBLE_DEVICES / HIP_VISIBLE_DEVICES: unset keeps all; "" or "-1" hides all;
    otherwise indices or (prefixes of) UUIDs, in the order given. As CUDA does, the list ends at
    the first entry that names no device."""
    if visible is None:
        return list(gpus)
    out: list[GPU] = []
    for raw in visible.split(","):
        entry = raw.strip()
        match = _match_device(gpus, entry)
        if match is None:
            break
        if match not in out:
            out.append(match)
    return out


def _match_device(gpus: list[GPU], entry: str) -> GPU | None:
    if not entry:
        return None
    if re.fullmatch(r"\d+", entry):
        return next((g for g in gpus if g.index == int(entry)), None)
    candidates = [g for g in gpus if g.id.lower().startswith(entry.lower())]
    return candidates[0] if len(candidates) == 1 else None


def discover_gpus(probe: Probe, cuda_visible: str | None, hip_visible: str | None) -> list[GPU]:
    gpus = filter_visible(nvidia_gpus(probe), cuda_visible)
    gpus += filter_visible(amd_gpus(probe), hip_visible)
    gpus += metal_gpus(probe)
    return gpus
