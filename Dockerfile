# syntax=docker/dockerfile:1
# ollamalike in a container: `ollamalike serve` on 0.0.0.0:11434 as the non-root user `ollamalike`
# (uid 10001), the store (models, catalog, logs) on the /data volume.
#
#   docker build -t ollamalike:cpu .                                 # CPU
#   docker build --build-arg VARIANT=cuda -t ollamalike:cuda .       # NVIDIA GPUs (CUDA 12)
#   docker run -d -p 11434:11434 -v ollamalike-store:/data -e OLLAMALIKE_API_KEY=change-me ollamalike:cpu
#   docker run -d --gpus all -p 11434:11434 -v ollamalike-store:/data -e OLLAMALIKE_API_KEY=change-me ollamalike:cuda
#
# Listening beyond loopback needs OLLAMALIKE_API_KEY (or OLLAMALIKE_INSECURE_NO_AUTH=1 on a private
# network). llama-cpp-python is compiled from source with install.sh's flags (never -march=native):
# CPU_FLAGS names the instruction sets the image may use, so it runs on every CPU that has them,
# whatever CPU built it. The default is x86-64-v3 (AVX2, FMA, F16C, BMI2: most servers since 2015).

ARG VARIANT=cpu
ARG UBUNTU=24.04
ARG CUDA_VERSION=12.6.3

# The four bases; VARIANT picks a pair.
FROM ubuntu:${UBUNTU} AS build-cpu
FROM nvidia/cuda:${CUDA_VERSION}-devel-ubuntu${UBUNTU} AS build-cuda
FROM ubuntu:${UBUNTU} AS runtime-cpu
FROM nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu${UBUNTU} AS runtime-cuda

# --- build: a virtual environment in /opt/ollamalike with llama-cpp-python compiled in -------------
FROM build-${VARIANT} AS build
ARG VARIANT
ARG CPU_FLAGS="avx avx2 fma f16c bmi2"
# CUDA only: the GPU generations to compile kernels for (Turing to Hopper).
ARG CUDA_ARCHITECTURES="75;80;86;89;90"
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-dev build-essential cmake git \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY install.sh pyproject.toml README.md ./
COPY ollamalike ./ollamalike
RUN python3 -m venv /opt/ollamalike
# The CMake flags come from install.sh (--print-build-flags changes nothing); a native build is refused.
# No GPU exists at build time: the CUDA driver library is resolved when the container runs.
RUN set -eu; \
    extra=""; \
    if [ "$VARIANT" = cuda ]; then \
      extra="-DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHITECTURES} -DCMAKE_EXE_LINKER_FLAGS=-Wl,--allow-shlib-undefined"; \
    fi; \
    flags="$(OLLAMALIKE_BACKEND="$VARIANT" OLLAMALIKE_CPU_FLAGS="$CPU_FLAGS" LLAMA_CMAKE_ARGS="$extra" \
             PYTHON=/opt/ollamalike/bin/python bash install.sh --print-build-flags | sed -n 's/^cmake_args=//p')"; \
    case "$flags" in *GGML_NATIVE=OFF*) ;; *) echo "install.sh gave no GGML_NATIVE=OFF: refusing" >&2; exit 1;; esac; \
    case "$flags" in *march=native*) echo "refusing a build tuned to the build machine" >&2; exit 1;; esac; \
    echo "CMake flags: $flags"; \
    /opt/ollamalike/bin/pip install --no-cache-dir --upgrade pip wheel setuptools; \
    CMAKE_ARGS="$flags" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
      /opt/ollamalike/bin/pip install --no-cache-dir --no-binary llama-cpp-python /src
# A bad CPU build dies here, not in front of a user (the CUDA build has no GPU to test on).
RUN if [ "$VARIANT" = cpu ]; then /opt/ollamalike/bin/python -m ollamalike.runner.smoke; fi

# --- runtime ---------------------------------------------------------------------------------------
FROM runtime-${VARIANT}
ARG VARIANT
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 libgomp1 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --create-home --home-dir /home/ollamalike \
               --shell /usr/sbin/nologin ollamalike \
    && mkdir -p /data \
    && chown ollamalike:ollamalike /data
COPY --from=build /opt/ollamalike /opt/ollamalike
ENV PATH=/opt/ollamalike/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    OLLAMALIKE_HOME=/data \
    OLLAMALIKE_MODELS=/data/models \
    OLLAMALIKE_HOST=0.0.0.0:11434 \
    OLLAMALIKE_BACKEND=${VARIANT}
VOLUME ["/data"]
USER ollamalike
WORKDIR /home/ollamalike
EXPOSE 11434
# Liveness only (never touches the store or a runner); readiness is /api/health (see docs/scale-out.md).
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:11434/api/health/live', timeout=2)"]
# SIGTERM drains: requests in flight get OLLAMALIKE_DRAIN_TIMEOUT (30s) to finish. Give `docker stop`
# more than that: docker stop -t 40.
STOPSIGNAL SIGTERM
ENTRYPOINT ["ollamalike"]
CMD ["serve"]
