"""Hardware discovery from recorded outputs of real machines (tests/data/hardware/).

Each probe is fed through ``Probe`` (commands, files, the NVML module), so the parsers and the
fallback order are tested without the hardware; the live machine is covered in test_hardware_e2e.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ollamalike import hardware
from ollamalike.config import load_config
from ollamalike.hardware import SystemInfo, build_mismatch, describe
from ollamalike.hardware.cpu import CPU, cpu_info, darwin_cpu, parse_cpuinfo, parse_meminfo, parse_vm_stat
from ollamalike.hardware.discovery import (
    GIB,
    GPU,
    MIB,
    NVIDIA_SMI_QUERY,
    ROCM_SMI_QUERY,
    Probe,
    amd_gpus,
    discover_gpus,
    filter_visible,
    metal_gpus,
    metal_working_set,
    nvidia_from_nvml,
    nvidia_gpus,
    parse_nvidia_smi,
    parse_rocm_smi,
    run_command,
)

DATA = Path(__file__).parent / "data" / "hardware"


def recorded(name: str) -> str:
    return (DATA / name).read_text()


class FakeNVML:
    """The slice of pynvml discovery uses, answering from a recorded JSON of NVML values."""

    class NVMLError(Exception):
        pass

    def __init__(self, data: dict[str, Any] | None, fail_init: bool = False) -> None:
        self.data = data or {"devices": []}
        self.fail_init = fail_init
        self.shutdowns = 0

    def nvmlInit(self) -> None:
        if self.fail_init:
            raise self.NVMLError("NVML Shared Library Not Found")

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlSystemGetDriverVersion(self) -> str:
        return str(self.data["driver_version"])

    def nvmlDeviceGetCount(self) -> int:
        return len(self.data["devices"])

    def nvmlDeviceGetHandleByIndex(self, i: int) -> dict[str, Any]:
        return dict(self.data["devices"][i])

    def nvmlDeviceGetMemoryInfo(self, handle: dict[str, Any]) -> SimpleNamespace:
        return SimpleNamespace(total=handle["total"], free=handle["free"], used=handle["used"])

    def nvmlDeviceGetUUID(self, handle: dict[str, Any]) -> bytes:
        return handle["uuid"].encode()  # older bindings return bytes

    def nvmlDeviceGetName(self, handle: dict[str, Any]) -> str:
        return str(handle["name"])

    def nvmlDeviceGetCudaComputeCapability(self, handle: dict[str, Any]) -> tuple[int, int]:
        major, minor = handle["compute_capability"]
        return major, minor


def probe(commands: dict[str, str] | None = None, files: dict[str, str] | None = None, nvml: Any = None,
          system: str = "Linux", machine: str = "x86_64") -> tuple[Probe, list[list[str]]]:
    """A Probe answering from recorded outputs; commands are keyed by argv[0]. Returns the calls too."""
    calls: list[list[str]] = []
    commands, files = commands or {}, files or {}

    def run(argv: list[str]) -> str | None:
        calls.append(argv)
        return commands.get(argv[0])

    def glob(pattern: str) -> list[str]:
        assert pattern == "/sys/class/drm/card*/device"
        return sorted({p.rsplit("/", 1)[0] for p in files if p.startswith("/sys/class/drm/card")})

    return Probe(run=run, read=files.get, glob=glob, nvml=lambda: nvml, system=system, machine=machine), calls


# -- NVIDIA ---------------------------------------------------------------------------------
def test_nvidia_smi_one_gpu() -> None:
    (gpu,) = parse_nvidia_smi(recorded("nvidia-smi-1gpu.csv"))
    assert gpu == GPU("cuda", 0, "GPU-6a5f4b2e-1c3d-4e8f-9a0b-7c2d1e3f4a5b", "NVIDIA GeForce RTX 4090",
                      24564 * MIB, 23815 * MIB, "550.54.15", "8.9")


def test_nvidia_smi_two_gpus() -> None:
    gpus = parse_nvidia_smi(recorded("nvidia-smi-2gpu.csv"))
    assert [(g.index, g.name, g.total // MIB, g.free // MIB) for g in gpus] == [
        (0, "NVIDIA A100-SXM4-80GB", 81920, 81037),
        (1, "NVIDIA A100-SXM4-80GB", 81920, 40210),
    ]
    assert gpus[1].id == "GPU-a2c7e91b-4d58-3f06-b8e2-7c91d4a5f213" and gpus[1].compute == "8.0"


@pytest.mark.parametrize("text, expected", [
    ("", []),
    ("No devices were found\n", []),
    ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n", []),
    ("0, GPU-1, Tesla K80, 11441, [N/A], 470.82.01, 3.7\n", []),  # unparsable memory: skipped, no crash
    ("0, GPU-1, Quadro RTX 4000, Mobile, 8192, 8000, 535.1, [Not Supported]\n",
     [GPU("cuda", 0, "GPU-1", "Quadro RTX 4000, Mobile", 8192 * MIB, 8000 * MIB, "535.1", "")]),
])
def test_nvidia_smi_odd_outputs(text: str, expected: list[GPU]) -> None:
    assert parse_nvidia_smi(text) == expected


def test_nvml_values_from_recorded_fixture() -> None:
    nvml = FakeNVML(json.loads(recorded("nvml-2gpu.json")))
    gpus = nvidia_from_nvml(nvml)
    assert gpus is not None and nvml.shutdowns == 1
    assert [(g.index, g.name, g.total, g.free, g.driver, g.compute) for g in gpus] == [
        (0, "NVIDIA RTX A6000", 51527024640, 50919571456, "550.90.07", "8.6"),
        (1, "NVIDIA GeForce RTX 3090", 25769803776, 24832638976, "550.90.07", "8.6"),
    ]
    assert gpus[0].id == "GPU-3b1e6f0a-2c9d-4e84-b7a1-5d0c8e2f6a94"


def test_nvml_is_preferred_and_nvidia_smi_not_run() -> None:
    p, calls = probe({"nvidia-smi": recorded("nvidia-smi-1gpu.csv")}, nvml=FakeNVML(json.loads(recorded("nvml-2gpu.json"))))
    assert [g.name for g in nvidia_gpus(p)] == ["NVIDIA RTX A6000", "NVIDIA GeForce RTX 3090"]
    assert calls == []


def test_nvml_failure_falls_back_to_nvidia_smi() -> None:
    p, calls = probe({"nvidia-smi": recorded("nvidia-smi-2gpu.csv")}, nvml=FakeNVML(None, fail_init=True))
    assert len(nvidia_gpus(p)) == 2 and calls == [NVIDIA_SMI_QUERY]
    p, _ = probe({"nvidia-smi": recorded("nvidia-smi-1gpu.csv")}, nvml=None)  # pynvml not installed
    assert [g.name for g in nvidia_gpus(p)] == ["NVIDIA GeForce RTX 4090"]


def test_real_pynvml_without_a_driver_is_no_gpu() -> None:
    import pynvml

    assert nvidia_from_nvml(pynvml) in (None, [])  # no NVIDIA driver in this sandbox: None, never a crash


# -- AMD ------------------------------------------------------------------------------------
def test_rocm_smi_json() -> None:
    gpus = parse_rocm_smi(recorded("rocm-smi.json"))
    assert [(g.index, g.name, g.total, g.free, g.compute, g.id) for g in gpus] == [
        (0, "Radeon RX 7900 XTX", 25753026560, 25753026560 - 1349455872, "gfx1100", "0x8e5c1d2a93b4f071"),
        (1, "Radeon RX 6800 XT", 17163091968, 17163091968 - 12779520, "gfx1030", "0x4a2b9c7d1e5f3086"),
    ]


@pytest.mark.parametrize("text", ["", "not json", "[]", '{"system": {"Driver version": "6.7"}}',
                                  '{"card0": {"VRAM Total Memory (B)": "N/A"}}'])
def test_rocm_smi_garbage_is_no_gpu(text: str) -> None:
    assert parse_rocm_smi(text) == []


def test_amd_sysfs_fallback_when_rocm_smi_is_missing() -> None:
    p, calls = probe(files=json.loads(recorded("sysfs-amd.json")))
    (gpu,) = amd_gpus(p)
    assert calls == [ROCM_SMI_QUERY]
    assert (gpu.library, gpu.name, gpu.total, gpu.free, gpu.id) == (
        "rocm", "AMD Radeon RX 6800 XT", 17163091968, 17163091968 - 314572800, "4a2b9c7d1e5f3086")


def test_rocm_smi_wins_over_sysfs() -> None:
    p, _ = probe({"rocm-smi": recorded("rocm-smi.json")}, files=json.loads(recorded("sysfs-amd.json")))
    assert [g.name for g in amd_gpus(p)] == ["Radeon RX 7900 XTX", "Radeon RX 6800 XT"]


# -- Apple ----------------------------------------------------------------------------------
def test_metal_on_apple_silicon() -> None:
    commands = {"sysctl": recorded("sysctl-m2pro.txt"), "system_profiler": recorded("system_profiler-m2pro.txt")}
    p, _ = probe(commands, system="Darwin", machine="arm64")
    (gpu,) = metal_gpus(p)
    assert gpu.library == "metal" and gpu.name == "Apple M2 Pro (19 GPU cores)"
    assert gpu.total == gpu.free == 32 * GIB * 2 // 3  # 32 GiB machine: 2/3 is the working set


@pytest.mark.parametrize("ram_gib, fraction", [(8, 2 / 3), (16, 2 / 3), (36, 2 / 3), (64, 3 / 4), (192, 3 / 4)])
def test_metal_working_set_fraction(ram_gib: int, fraction: float) -> None:
    assert metal_working_set(ram_gib * GIB) == pytest.approx(ram_gib * GIB * fraction, abs=1)


def test_no_metal_on_intel_macs_or_linux() -> None:
    commands = {"sysctl": recorded("sysctl-m2pro.txt")}
    assert metal_gpus(probe(commands, system="Darwin", machine="x86_64")[0]) == []
    assert metal_gpus(probe(commands, system="Linux", machine="aarch64")[0]) == []
    assert metal_gpus(probe({}, system="Darwin", machine="arm64")[0]) == []  # sysctl failed


def test_macos_cpu_and_memory() -> None:
    cpu = darwin_cpu(recorded("sysctl-m2pro.txt"), recorded("vm_stat-m2pro.txt"), "arm64")
    assert (cpu.name, cpu.physical_cores, cpu.threads, cpu.total_memory) == ("Apple M2 Pro", 12, 12, 32 * GIB)
    assert {"neon", "asimd", "dotprod", "fphp"} <= set(cpu.flags) and "i8mm" not in cpu.flags
    assert cpu.free_memory == (61527 + 781430 + 17021) * 16384
    assert parse_vm_stat("") == 0


# -- CPU and memory on Linux ----------------------------------------------------------------
@pytest.mark.parametrize("name, model, cores, threads, flags", [
    ("cpuinfo-x86-xeon.txt", "Intel(R) Xeon(R) Gold 6348 CPU @ 2.60GHz", 4, 8,
     {"sse3", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni"}),
    ("cpuinfo-arm-neoverse.txt", "Neoverse-N1", 4, 4, {"asimd", "asimddp", "fphp"}),
    ("cpuinfo-arm-rpi5.txt", "Raspberry Pi 5 Model B Rev 1.0 (Cortex-A76)", 4, 4, {"asimd", "asimddp"}),
])
def test_cpuinfo(name: str, model: str, cores: int, threads: int, flags: set[str]) -> None:
    got_model, got_cores, got_threads, got_flags = parse_cpuinfo(recorded(name))
    assert (got_model, got_cores, got_threads) == (model, cores, threads)
    assert flags <= set(got_flags)
    if "arm" in name:
        assert "avx" not in got_flags


@pytest.mark.parametrize("name, total, available, swap", [
    ("meminfo-x86-xeon.txt", 528017540 * 1024, 497530112 * 1024, 8388604 * 1024),
    ("meminfo-arm-rpi5.txt", 8245392 * 1024, 7319472 * 1024, 524272 * 1024),
    ("meminfo-old-kernel.txt", 4046068 * 1024, (812340 + 150236 + 1650124) * 1024, 0),  # no MemAvailable
])
def test_meminfo(name: str, total: int, available: int, swap: int) -> None:
    assert parse_meminfo(recorded(name)) == (total, available, swap)


def test_cpu_info_through_probe() -> None:
    files = {"/proc/cpuinfo": recorded("cpuinfo-arm-neoverse.txt"), "/proc/meminfo": recorded("meminfo-arm-rpi5.txt")}
    cpu = cpu_info(probe(files=files, machine="aarch64")[0])
    assert (cpu.name, cpu.arch, cpu.physical_cores, cpu.total_memory) == ("Neoverse-N1", "aarch64", 4, 8245392 * 1024)
    unreadable = cpu_info(probe(machine="aarch64")[0])  # /proc not readable: still a usable CPU entry
    assert unreadable.threads >= 1 and unreadable.name == "aarch64"


# -- CUDA_VISIBLE_DEVICES / HIP_VISIBLE_DEVICES ---------------------------------------------
FOUR = [GPU("cuda", i, f"GPU-{c}{c}{c}{c}-uuid", f"gpu{i}", 8 * GIB, 8 * GIB) for i, c in enumerate("abcd")]


@pytest.mark.parametrize("visible, expected", [
    (None, [0, 1, 2, 3]),  # unset: all
    ("", []),  # empty: none
    ("-1", []),
    ("1", [1]),
    ("2,0", [2, 0]),  # the order given is the order used
    (" 3 , 1 ", [3, 1]),
    ("0,0,1", [0, 1]),
    ("1,7,2", [1]),  # CUDA stops at the first entry naming no device
    ("1,-1,2", [1]),
    ("GPU-cccc-uuid", [2]),
    ("GPU-bbbb", [1]),  # a unique UUID prefix
    ("GPU-", []),  # ambiguous prefix: no device
    ("gpu-dddd-uuid,0", [3, 0]),
    ("MIG-1234", []),
    ("nonsense", []),
])
def test_visible_devices_table(visible: str | None, expected: list[int]) -> None:
    assert [g.index for g in filter_visible(FOUR, visible)] == expected


def test_visible_devices_apply_per_vendor() -> None:
    commands = {"nvidia-smi": recorded("nvidia-smi-2gpu.csv"), "rocm-smi": recorded("rocm-smi.json")}
    p, _ = probe(commands)
    gpus = discover_gpus(p, "1", "-1")
    assert [(g.library, g.index) for g in gpus] == [("cuda", 1)]
    p, _ = probe(commands)
    gpus = discover_gpus(p, "", "1,0")
    assert [(g.library, g.index) for g in gpus] == [("rocm", 1), ("rocm", 0)]


def test_config_reads_visible_devices() -> None:
    config = load_config({"CUDA_VISIBLE_DEVICES": "GPU-abc,1", "HIP_VISIBLE_DEVICES": ""})
    assert config.cuda_visible_devices == "GPU-abc,1" and config.hip_visible_devices == ""
    assert load_config({}).cuda_visible_devices is None


# -- commands -------------------------------------------------------------------------------
def test_run_command_failures_are_none_not_errors() -> None:
    assert run_command(["ollamalike-no-such-tool-xyz"]) is None
    assert run_command(["sh", "-c", "echo broken >&2; exit 3"]) is None
    started = time.monotonic()
    assert run_command(["sleep", "30"], timeout=0.3) is None  # a hung tool is given up on quickly
    assert time.monotonic() - started < 5
    assert run_command(["sh", "-c", "echo ok"]) == "ok\n"


# -- summaries ------------------------------------------------------------------------------
CPU_X86 = CPU("Intel Xeon", "x86_64", 8, 16, ("avx2",), 64 * GIB, 48 * GIB)
RTX = GPU("cuda", 0, "GPU-1", "NVIDIA GeForce RTX 4090", 24 * GIB, 23 * GIB, "550.54.15", "8.9")
CPU_BUILD = {"backend": "cpu", "gpu_offload": False, "llama_cpp_python": "0.3.36"}
CUDA_BUILD = {"backend": "cuda", "gpu_offload": True, "llama_cpp_python": "0.3.36"}


@pytest.mark.parametrize("gpus, backend, fix", [
    ((RTX,), CPU_BUILD, "OLLAMALIKE_BACKEND=cuda ./install.sh --rebuild"),
    ((GPU("rocm", 0, "1", "Radeon", 24 * GIB, 24 * GIB),), CPU_BUILD, "OLLAMALIKE_BACKEND=rocm ./install.sh --rebuild"),
    ((GPU("metal", 0, "0", "Apple M2", 10 * GIB, 10 * GIB),), CPU_BUILD, "OLLAMALIKE_BACKEND=metal ./install.sh --rebuild"),
    ((GPU("rocm", 0, "1", "Radeon", 24 * GIB, 24 * GIB),), CUDA_BUILD, "OLLAMALIKE_BACKEND=rocm ./install.sh --rebuild"),
    ((RTX,), CUDA_BUILD, None),
    ((), CPU_BUILD, None),
    ((RTX,), None, None),  # backend unknown: no claim either way
])
def test_build_mismatch(gpus: tuple[GPU, ...], backend: dict[str, Any] | None, fix: str | None) -> None:
    message = build_mismatch(SystemInfo(CPU_X86, gpus, backend))
    if fix is None:
        assert message is None
    else:
        assert message is not None and message.endswith(fix)


def test_usable_gpus_follow_the_backend() -> None:
    assert SystemInfo(CPU_X86, (RTX,), CUDA_BUILD).usable_gpus == (RTX,)
    assert SystemInfo(CPU_X86, (RTX,), CPU_BUILD).usable_gpus == ()
    assert SystemInfo(CPU_X86, (RTX,), {"backend": "metal", "gpu_offload": True}).usable_gpus == ()


def test_describe_one_line_per_device() -> None:
    lines = describe(SystemInfo(CPU_X86, (RTX, RTX), CUDA_BUILD))
    assert len(lines) == 3 and lines[0].startswith("cpu: Intel Xeon, 8 cores, 16 threads")
    assert lines[1] == ("gpu cuda:0 NVIDIA GeForce RTX 4090 (GPU-1): 24.0 GiB total, 23.0 GiB free; "
                        "driver 550.54.15, compute 8.9")


def test_system_cache_refreshes_free_memory_only() -> None:
    config = load_config({"CUDA_VISIBLE_DEVICES": "7"})  # its own cache entry
    files = {"/proc/cpuinfo": recorded("cpuinfo-x86-xeon.txt"), "/proc/meminfo": recorded("meminfo-x86-xeon.txt")}
    first = hardware.system(config, probe=probe(files=files)[0])
    files["/proc/meminfo"] = recorded("meminfo-old-kernel.txt")
    assert hardware.system(config, probe=probe(files=files)[0]) is first  # cached
    fresh = hardware.system(config, refresh=True, probe=probe(files=files)[0])
    assert fresh.cpu.free_memory == (812340 + 150236 + 1650124) * 1024
    assert fresh.cpu.name == first.cpu.name == "Intel(R) Xeon(R) Gold 6348 CPU @ 2.60GHz"


def test_info_text_shows_gpus_and_the_rebuild_fix() -> None:
    from ollamalike.cli.info import info_text

    gpus = tuple(parse_nvidia_smi(recorded("nvidia-smi-2gpu.csv")))
    text = info_text(SystemInfo(CPU_X86, gpus, {**CPU_BUILD, "system_info": "CPU : AVX2 = 1 |"}))
    lines = text.splitlines()
    assert lines[2] == "Memory:   64.0 GiB total, 48.0 GiB available"
    assert lines[3].startswith("GPUs:     cuda:0 NVIDIA A100-SXM4-80GB: 80.0 GiB total, 79.1 GiB free")
    assert lines[4].startswith("          cuda:1 NVIDIA A100-SXM4-80GB: 80.0 GiB total, 39.3 GiB free")
    assert "Backend:  llama.cpp cpu (llama-cpp-python 0.3.36, GPU offload: no)" in lines
    assert "Context:  4096 tokens by default (no usable VRAM)" in lines  # the CPU build cannot use them
    assert lines[-1] == ("Warning:  an NVIDIA GPU is present but llama-cpp-python was built for the CPU only, so models "
                         "run on the CPU; rebuild it with: OLLAMALIKE_BACKEND=cuda ./install.sh --rebuild")
    cuda = info_text(SystemInfo(CPU_X86, gpus, CUDA_BUILD))
    assert "Warning" not in cuda and "Context:  262144 tokens by default (160.0 GiB of usable VRAM)" in cuda


def test_system_refresh_rereads_gpu_free_memory() -> None:
    config = load_config({"CUDA_VISIBLE_DEVICES": "0,1"})  # its own cache entry
    first = hardware.system(config, probe=probe({"nvidia-smi": recorded("nvidia-smi-2gpu.csv")})[0])
    assert [g.free // MIB for g in first.gpus] == [81037, 40210]
    assert first.backend is not None and first.backend["backend"] == "cpu"  # probed because GPUs were found
    busier = recorded("nvidia-smi-2gpu.csv").replace("81037", "1024")
    fresh = hardware.system(config, refresh=True, probe=probe({"nvidia-smi": busier})[0])
    assert [g.free // MIB for g in fresh.gpus] == [1024, 40210] and fresh.backend == first.backend
    assert build_mismatch(fresh) is not None and fresh.usable_gpus == ()
