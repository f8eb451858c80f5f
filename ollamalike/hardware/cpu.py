"""CPU and system memory discovery: /proc/cpuinfo and /proc/meminfo on Linux, sysctl/vm_stat on macOS.

Parsers take the recorded text so tests can use real machines' outputs; ``cpu_info(probe)``
reads the live machine through a ``Probe``.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass

from ollamalike.hardware.discovery import Probe, parse_sysctl

log = logging.getLogger("ollamalike.hardware")

# Instruction sets that matter to llama.cpp's CPU kernels, in the order they are shown.
NOTABLE_FLAGS = ("sse3", "ssse3", "avx", "avx2", "f16c", "fma", "avx_vnni", "avx512f", "avx512bw", "avx512_vnni",
                 "avx512_bf16", "amx_tile", "amx_int8", "neon", "asimd", "asimddp", "fphp", "i8mm", "sve", "sve2",
                 "bf16", "dotprod")
_FLAG_ALIASES = {"pni": "sse3", "avx512vnni": "avx512_vnni"}
# Arm Ltd. (implementer 0x41) part numbers: ARM Linux's /proc/cpuinfo names no model.
_ARM_PARTS = {"0xd03": "Cortex-A53", "0xd07": "Cortex-A57", "0xd08": "Cortex-A72", "0xd0b": "Cortex-A76",
              "0xd0c": "Neoverse-N1", "0xd40": "Neoverse-V1", "0xd49": "Neoverse-N2", "0xd4f": "Neoverse-V2"}


@dataclass(frozen=True)
class CPU:
    name: str
    arch: str
    physical_cores: int
    threads: int
    flags: tuple[str, ...]  # the notable ones, lowercase
    total_memory: int  # bytes of RAM
    free_memory: int  # bytes available to a new process without swapping
    free_swap: int = 0


def parse_cpuinfo(text: str) -> tuple[str, int, int, tuple[str, ...]]:
    """(model name, physical cores, threads, notable flags) from /proc/cpuinfo (x86 or ARM)."""
    blocks = [b for b in re.split(r"\n\s*\n", text) if "processor" in b]
    threads = len(blocks)
    cores: set[tuple[str, str]] = set()
    name = ""
    flags: set[str] = set()
    for block in blocks:
        fields: dict[str, str] = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip().lower()] = value.strip()
        if "core id" in fields:
            cores.add((fields.get("physical id", "0"), fields["core id"]))
        name = name or fields.get("model name", "")
        if not name and fields.get("cpu implementer") == "0x41":
            name = _ARM_PARTS.get(fields.get("cpu part", ""), "")
        flags.update(_FLAG_ALIASES.get(f, f) for f in (fields.get("flags") or fields.get("features") or "").lower().split())
    # Header-only fields on ARM ("Hardware", "Model") sit in their own block without "processor".
    m = re.search(r"^(?:Model|Hardware)\s*:\s*(.+)$", text, re.MULTILINE)
    if m:
        name = f"{m.group(1).strip()} ({name})" if name else m.group(1).strip()
    physical = len(cores) or threads
    notable = tuple(f for f in NOTABLE_FLAGS if f in flags)
    return name, physical, threads, notable


def parse_meminfo(text: str) -> tuple[int, int, int]:
    """(total, available, free swap) bytes from /proc/meminfo. MemAvailable is what a new process
    can get without swapping; kernels before 3.14 lack it, then free + buffers + page cache."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        m = re.match(r"(\w+):\s+(\d+)\s*kB", line)
        if m:
            values[m.group(1)] = int(m.group(2)) * 1024
    total = values.get("MemTotal", 0)
    available = values.get("MemAvailable")
    if available is None:
        available = values.get("MemFree", 0) + values.get("Buffers", 0) + values.get("Cached", 0)
    return total, available, values.get("SwapFree", 0)


def parse_vm_stat(text: str) -> int:
    """Bytes free or quickly reclaimable on macOS: free + inactive + speculative pages."""
    page = re.search(r"page size of (\d+) bytes", text)
    size = int(page.group(1)) if page else 4096
    pages = 0
    for label in ("Pages free", "Pages inactive", "Pages speculative"):
        m = re.search(rf"^{label}:\s+(\d+)\.", text, re.MULTILINE)
        if m:
            pages += int(m.group(1))
    return pages * size


def darwin_cpu(sysctl_text: str, vm_stat_text: str, machine: str) -> CPU:
    values = parse_sysctl(sysctl_text)
    total = _int(values.get("hw.memsize"))
    flags: set[str] = set()
    for key, value in values.items():
        if key.startswith("hw.optional.") and value == "1":
            flag = key.lower().removeprefix("hw.optional.").removeprefix("arm.feat_").removeprefix("arm.")
            flags.add({"advsimd": "asimd", "fp16": "fphp"}.get(flag, flag))
        if key in ("machdep.cpu.features", "machdep.cpu.leaf7_features"):
            flags.update(value.lower().replace(".", "_").split())
    threads = _int(values.get("hw.logicalcpu")) or os.cpu_count() or 1
    return CPU(
        name=values.get("machdep.cpu.brand_string", ""),
        arch=machine,
        physical_cores=_int(values.get("hw.physicalcpu")) or threads,
        threads=threads,
        flags=tuple(f for f in NOTABLE_FLAGS if f in flags),
        total_memory=total,
        free_memory=min(parse_vm_stat(vm_stat_text), total) if total else parse_vm_stat(vm_stat_text),
    )


def _int(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0


def cpu_info(probe: Probe) -> CPU:
    if probe.system == "Darwin":
        sysctl = probe.run(["sysctl", "hw", "machdep.cpu"]) or ""
        return darwin_cpu(sysctl, probe.run(["vm_stat"]) or "", probe.machine)
    name, physical, threads, flags = parse_cpuinfo(probe.read("/proc/cpuinfo") or "")
    total, available, swap = parse_meminfo(probe.read("/proc/meminfo") or "")
    threads = threads or os.cpu_count() or 1
    return CPU(name or probe.machine, probe.machine, physical or threads, threads, flags, total, available, swap)


def free_memory(probe: Probe) -> tuple[int, int]:
    """(available RAM, free swap) now; cheap enough to call before every load."""
    if probe.system == "Darwin":
        return parse_vm_stat(probe.run(["vm_stat"]) or ""), 0
    _, available, swap = parse_meminfo(probe.read("/proc/meminfo") or "")
    return available, swap
