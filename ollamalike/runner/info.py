"""``python -m ollamalike.runner.info``: the compiled llama.cpp backend as one JSON object.

``hardware`` runs this in a subprocess, so neither the daemon nor the CLI imports llama_cpp.
Fields: llama_cpp_python (version), backend ("cpu", "cuda", "metal", "rocm", "vulkan", "sycl"),
gpu_offload (llama_supports_gpu_offload), mmap, mlock, system_info (llama_print_system_info),
backends (ggml's registered backend names) and devices (ggml's devices with memory), the last
two read through ctypes from libggml because llama-cpp-python does not bind them.
"""

from __future__ import annotations

import ctypes
import json
import sys
from pathlib import Path
from typing import Any

# ggml_backend_dev_type values.
_DEVICE_TYPES = {0: "cpu", 1: "gpu", 2: "igpu", 3: "accel"}
# ggml backend registry names -> our backend names, in order of preference.
_BACKENDS = {"cuda": "cuda", "metal": "metal", "mtl": "metal", "rocm": "rocm", "hip": "rocm", "vulkan": "vulkan",
             "sycl": "sycl"}


def _ggml_library(package_dir: Path) -> ctypes.CDLL | None:
    for name in ("libggml.so", "libggml.dylib", "ggml.dll"):
        path = package_dir / "lib" / name
        if path.exists():
            try:
                return ctypes.CDLL(str(path))
            except OSError:
                return None
    return None


def ggml_devices(package_dir: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """(registered backend names, devices) from libggml; empty when it cannot be read."""
    lib = _ggml_library(package_dir)
    if lib is None:
        return [], []
    try:
        lib.ggml_backend_reg_count.restype = ctypes.c_size_t
        lib.ggml_backend_reg_get.restype = ctypes.c_void_p
        lib.ggml_backend_reg_get.argtypes = [ctypes.c_size_t]
        lib.ggml_backend_reg_name.restype = ctypes.c_char_p
        lib.ggml_backend_reg_name.argtypes = [ctypes.c_void_p]
        lib.ggml_backend_dev_count.restype = ctypes.c_size_t
        lib.ggml_backend_dev_get.restype = ctypes.c_void_p
        lib.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
        for fn in (lib.ggml_backend_dev_name, lib.ggml_backend_dev_description):
            fn.restype = ctypes.c_char_p
            fn.argtypes = [ctypes.c_void_p]
        lib.ggml_backend_dev_type.restype = ctypes.c_int
        lib.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
        lib.ggml_backend_dev_memory.restype = None
        lib.ggml_backend_dev_memory.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t),
                                                ctypes.POINTER(ctypes.c_size_t)]
    except AttributeError:  # an older libggml without the device registry
        return [], []
    names = [_text(lib.ggml_backend_reg_name(lib.ggml_backend_reg_get(i))) for i in range(lib.ggml_backend_reg_count())]
    devices = []
    for i in range(lib.ggml_backend_dev_count()):
        dev = lib.ggml_backend_dev_get(i)
        free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
        lib.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
        devices.append({
            "name": _text(lib.ggml_backend_dev_name(dev)),
            "description": _text(lib.ggml_backend_dev_description(dev)),
            "type": _DEVICE_TYPES.get(lib.ggml_backend_dev_type(dev), "unknown"),
            "memory_free": int(free.value),
            "memory_total": int(total.value),
        })
    return names, devices


def _text(value: bytes | None) -> str:
    return (value or b"").decode("utf-8", errors="replace")


def backend_info() -> dict[str, Any]:
    import llama_cpp

    llama_cpp.llama_backend_init()
    system = llama_cpp.llama_print_system_info().decode("utf-8", errors="replace").strip()
    gpu = bool(llama_cpp.llama_supports_gpu_offload())
    names, devices = ggml_devices(Path(llama_cpp.__file__).parent)
    candidates = [n.lower() for n in names] or [part.split(":")[0].strip().lower() for part in system.split("|")]
    candidates += [w.strip(" :=").lower() for w in system.split()]
    backend = "cpu"
    if gpu:
        backend = next((_BACKENDS[c] for c in candidates if c in _BACKENDS), "gpu")
    return {
        "llama_cpp_python": llama_cpp.__version__,
        "backend": backend,
        "gpu_offload": gpu,
        "mmap": bool(llama_cpp.llama_supports_mmap()),
        "mlock": bool(llama_cpp.llama_supports_mlock()),
        "system_info": system,
        "backends": names,
        "devices": devices,
    }


def main() -> int:
    print(json.dumps(backend_info()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
