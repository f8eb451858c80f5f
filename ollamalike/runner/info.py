"""``python -m ollamalike.runner.info``: the compiled llama.cpp backend as one JSON object.

The hardware module runs this in a subprocess (the daemon never imports llama_cpp itself).
"""

from __future__ import annotations

import json
import sys
from typing import Any


def backend_info() -> dict[str, Any]:
    import llama_cpp

    system = llama_cpp.llama_print_system_info().decode("utf-8", errors="replace").strip()
    gpu = bool(llama_cpp.llama_supports_gpu_offload())
    lowered = system.lower()
    backend = "cpu"
    for name in ("cuda", "metal", "rocm", "hip", "vulkan", "sycl"):
        if gpu and name in lowered:
            backend = "rocm" if name == "hip" else name
            break
    return {
        "llama_cpp_python": llama_cpp.__version__,
        "backend": backend,
        "gpu_offload": gpu,
        "mmap": bool(llama_cpp.llama_supports_mmap()),
        "mlock": bool(llama_cpp.llama_supports_mlock()),
        "system_info": system,
    }


def main() -> int:
    print(json.dumps(backend_info()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
