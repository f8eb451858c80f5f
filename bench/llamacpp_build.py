"""llama.cpp's own ``llama-server`` and ``llama-bench``, built once from the vendored source of our pinned wheel.

The reference contenders of bench/serving.py must run the same kernels as our llama-cpp-python wheel, so
they are compiled from the ``vendor/llama.cpp`` tree inside the llama-cpp-python sdist of the version
pyproject.toml pins, with the CPU flags install.sh chooses for the wheel (``install.sh --print-build-flags``:
never ``-march=native``, AMX off, the CPU's other instruction sets on). The result lives under
``bench/out/llama.cpp-<version>-<key>/`` where the key hashes the version and every CMake flag, so a
rebuild happens only when one of them changes. The sdist comes from pip (``pip download --no-binary``,
as install.sh fetches it) and is kept under bench/out/ too.

Run ``python bench/llamacpp_build.py`` to build ahead of time (prints the two binaries' paths).
Only the standard library is used, so this works before the project's venv exists.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO_ROOT = BENCH.parent
OUT = BENCH / "out"
TARGETS = ("llama-server", "llama-bench")

# The tools only, no web UI (it would be downloaded from the network: the benchmark talks to
# 127.0.0.1 only), no TLS, no curl: none of it is on the measured path.
TOOL_FLAGS = ("-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_BUILD_TOOLS=ON", "-DLLAMA_BUILD_SERVER=ON",
              "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_APP=OFF",
              "-DLLAMA_BUILD_UI=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF", "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF")


@dataclass(frozen=True)
class LlamaCppBuild:
    """Where the built tools are, and what they were built from."""

    version: str
    flags: tuple[str, ...]
    directory: Path

    @property
    def server(self) -> Path:
        return self.directory / "build" / "bin" / "llama-server"

    @property
    def bench(self) -> Path:
        return self.directory / "build" / "bin" / "llama-bench"

    def describe(self) -> str:
        ggml = " ".join(f.removeprefix("-DGGML_") for f in self.flags if f.startswith("-DGGML_"))
        return f"llama.cpp from the llama-cpp-python {self.version} sdist, {ggml}"


def pinned_version() -> str:
    """The llama-cpp-python version pyproject.toml pins (install.sh pins the same one)."""
    text = (REPO_ROOT / "pyproject.toml").read_text()
    match = re.search(r'"llama-cpp-python==([0-9][^"]*)"', text)
    if not match:
        raise SystemExit("pyproject.toml does not pin llama-cpp-python==<version>")
    return match.group(1)


def wheel_flags() -> tuple[str, ...]:
    """The backend and CPU flags install.sh builds the wheel with, from its own --print-build-flags
    (one source of truth for the flag logic), less the wheel's own target choices."""
    out = subprocess.run(["bash", str(REPO_ROOT / "install.sh"), "--print-build-flags"], check=True,
                         capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith("cmake_args="):
            args = line.removeprefix("cmake_args=").split()
            return tuple(a for a in args if a.startswith("-DGGML_"))
    raise SystemExit(f"install.sh --print-build-flags printed no cmake_args line:\n{out}")


def build_flags() -> tuple[str, ...]:
    return (*TOOL_FLAGS, *wheel_flags())


def build_dir(version: str, flags: tuple[str, ...]) -> Path:
    key = hashlib.sha256("|".join((version, *flags)).encode()).hexdigest()[:12]
    return OUT / f"llama.cpp-{version}-{key}"


def log(msg: str) -> None:
    print(f"  llama.cpp build: {msg}", file=sys.stderr, flush=True)


def source_tree(version: str) -> Path:
    """The sdist's vendored llama.cpp, downloaded and unpacked once."""
    src = OUT / f"llama_cpp_python-{version}" / "vendor" / "llama.cpp"
    if (src / "CMakeLists.txt").exists() and (src / "tools" / "server").is_dir():
        return src
    sdist = OUT / "sdist" / f"llama_cpp_python-{version}.tar.gz"
    if not sdist.exists():
        log(f"downloading the llama-cpp-python {version} sdist with pip")
        tmp = OUT / "sdist.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                        f"llama-cpp-python=={version}", "-d", str(tmp)], check=True)
        sdist.parent.mkdir(parents=True, exist_ok=True)
        (tmp / sdist.name).replace(sdist)
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"unpacking {sdist.name}")
    shutil.rmtree(OUT / f"llama_cpp_python-{version}", ignore_errors=True)
    with tarfile.open(sdist) as tar:
        # Only the vendored tree is needed; unpacking it alone also keeps the bench/out/ copy small.
        prefix = f"llama_cpp_python-{version}/vendor/llama.cpp/"
        members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
        if hasattr(tarfile, "data_filter"):
            tar.extractall(OUT, members=members, filter="data")
        else:  # Python < 3.10.12 / 3.11.4: no extraction filters yet
            tar.extractall(OUT, members=members)
    return src


def ensure_built(jobs: int = 2) -> LlamaCppBuild:
    """The cached build for the current version and flags, building it first if needed (minutes)."""
    version = pinned_version()
    flags = build_flags()
    build = LlamaCppBuild(version, flags, build_dir(version, flags))
    if build.server.exists() and build.bench.exists():
        return build
    if not shutil.which("cmake"):
        raise SystemExit("cmake is needed to build llama-server and llama-bench (apt-get install cmake g++)")
    src = source_tree(version)
    work = build.directory / "build"
    build.directory.mkdir(parents=True, exist_ok=True)
    logfile = build.directory / "build.log"
    (build.directory / "flags.txt").write_text(f"{version}\n" + "\n".join(flags) + "\n")
    start = time.monotonic()
    log(f"building {' and '.join(TARGETS)} into {build.directory} (-j{jobs}, several minutes; cached afterwards)")
    log("flags: " + " ".join(flags))
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    steps = [["cmake", "-S", str(src), "-B", str(work), *generator, *flags],
             ["cmake", "--build", str(work), f"-j{jobs}", "--target", *TARGETS]]
    with logfile.open("w") as f:
        for step in steps:
            f.write("$ " + " ".join(step) + "\n")
            f.flush()
            # The compiler's own parallelism is given by -j; nothing else is inherited from the caller.
            env = {k: v for k, v in os.environ.items() if k != "CMAKE_BUILD_PARALLEL_LEVEL"}
            rc = subprocess.run(step, stdout=f, stderr=subprocess.STDOUT, env=env).returncode
            if rc != 0:
                tail = logfile.read_text(errors="replace").splitlines()[-25:]
                raise SystemExit("\n".join([f"building llama.cpp failed (exit {rc}); full log: {logfile}", *tail]))
    if not (build.server.exists() and build.bench.exists()):
        raise SystemExit(f"the build finished without {build.server} and {build.bench}; see {logfile}")
    log(f"built in {time.monotonic() - start:.0f}s")
    return build


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 2, help="compile jobs (default: all cores)")
    ap.add_argument("--print", action="store_true", help="print the version, flags and directory; build nothing")
    args = ap.parse_args()
    if args.print:
        version, flags = pinned_version(), build_flags()
        print(f"version={version}\nflags={' '.join(flags)}\ndirectory={build_dir(version, flags)}")
        return 0
    build = ensure_built(args.jobs)
    print(f"{build.server}\n{build.bench}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
