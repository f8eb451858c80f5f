"""Benchmark: our registry pull (parallel ranged parts + sha256 verification) against curl.

Starts Debian's docker-registry on 127.0.0.1, pushes a model whose layer is a random blob
(1 GiB by default), then rotates between ``pull_model`` into a fresh store (verified and
fsynced), ``curl`` downloading the same blob to disk (neither), and curl followed by an fsync of
its file (durable, as ours). Prints a markdown table of median MB/s and the ratios.

    .venv/bin/python bench/pull.py [--size-mib 1024] [--runs 6] [--tls]

``--tls``: the registry serves HTTPS with a throwaway certificate that both sides trust (ours
through ``SSL_CERT_FILE``, as a user with a private CA would; the script re-runs itself with it
set, since OpenSSL reads it when aiohttp is imported), so the pull takes aiohttp's TLS path.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
CERT_DIR_ENV = "BENCH_PULL_CERT_DIR"


def _rerun_trusting_a_certificate() -> None:
    """For --tls: make a certificate, then run this script again with SSL_CERT_FILE naming it."""
    if "--tls" not in sys.argv or os.environ.get(CERT_DIR_ENV):
        return
    from tests.registry_server import self_signed_certificate

    cert_dir = Path(tempfile.mkdtemp(prefix="bench-pull-cert-"))
    cert, _ = self_signed_certificate(cert_dir)
    env = {**os.environ, CERT_DIR_ENV: str(cert_dir), "SSL_CERT_FILE": str(cert)}
    try:
        code = subprocess.run([sys.executable, *sys.argv], env=env, check=False).returncode
    finally:
        shutil.rmtree(cert_dir, ignore_errors=True)
    sys.exit(code)


_rerun_trusting_a_certificate()

from ollamalike.config import Config  # noqa: E402
from ollamalike.registry.pull import pull_model  # noqa: E402
from ollamalike.registry.push import push_model  # noqa: E402
from ollamalike.store import Store  # noqa: E402
from tests.registry_server import DockerRegistry, make_model  # noqa: E402


def write_random(path: Path, size: int) -> None:
    chunk = 16 * 1024 * 1024
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(chunk, left)
            f.write(os.urandom(n))
            left -= n


def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


async def ours(name: str, root: Path, insecure: bool) -> tuple[float, float]:
    """Wall and CPU seconds (this process, all threads) of one pull into a fresh store."""
    store = Store(root)
    try:
        cpu = cpu_seconds(resource.RUSAGE_SELF)
        start = time.perf_counter()
        async for _ in pull_model(store, Config(), name, insecure=insecure):
            pass
        return time.perf_counter() - start, cpu_seconds(resource.RUSAGE_SELF) - cpu
    finally:
        store.close()


def curl(url: str, out: Path, durable: bool = False, cacert: Path | None = None) -> tuple[float, float]:
    """curl writing the blob to ``out``; ``durable``: then fsync it, as a pull into the store does."""
    cpu = cpu_seconds(resource.RUSAGE_CHILDREN) + cpu_seconds(resource.RUSAGE_SELF)
    start = time.perf_counter()
    trust = ["--cacert", str(cacert)] if cacert else []
    subprocess.run(["curl", "-sSf", *trust, "-o", str(out), url], check=True)
    if durable:
        fd = os.open(out, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    wall = time.perf_counter() - start
    return wall, cpu_seconds(resource.RUSAGE_CHILDREN) + cpu_seconds(resource.RUSAGE_SELF) - cpu


METHODS = {
    "ours": "ollamalike pull (sha256 verified, fsynced)",
    "curl": "curl -o file (no verification, no fsync)",
    "curl+fsync": "curl -o file, then fsync (no verification)",
}


def _terminated(signum: int, frame: object) -> None:
    # Unwind like Ctrl-C so the finally below stops the registry and deletes the 1 GiB files.
    raise KeyboardInterrupt


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--tls", action="store_true", help="serve the registry over HTTPS")
    args = parser.parse_args()
    size = args.size_mib * 1024 * 1024
    work = Path(tempfile.mkdtemp(prefix="bench-pull-"))
    tls = None
    if args.tls:
        cert_dir = Path(os.environ[CERT_DIR_ENV])
        tls = (cert_dir / "cert.pem", cert_dir / "key.pem")
    registry = DockerRegistry(work / "registry", tls=tls)
    try:
        registry.start()
        blob = work / "blob.bin"
        write_random(blob, size)
        src = Store(work / "src")
        name = f"{registry.host}/bench/blob:latest"
        make_model(src, name, model_file=blob)
        blob.unlink()
        async for _ in push_model(src, Config(), name, insecure=tls is None):
            pass
        _, manifest, _ = src.get_manifest(name)
        src.close()
        shutil.rmtree(work / "src")
        layer = manifest["layers"][0]["digest"]
        url = f"{registry.url}/v2/bench/blob/blobs/{layer}"

        walls: dict[str, list[float]] = {m: [] for m in METHODS}
        cpus: dict[str, list[float]] = {m: [] for m in METHODS}
        order = list(METHODS)
        for i in range(args.runs):
            # The order rotates, so no method always follows another's page-cache churn.
            for method in order[i % len(order):] + order[: i % len(order)]:
                # Each run starts with nothing dirty in the page cache: curl's un-synced gigabyte
                # is otherwise written back during whatever runs next and is charged to it.
                os.sync()
                if method == "ours":
                    dest = work / f"pull-{i}"
                    wall, cpu = await ours(name, dest, insecure=tls is None)
                    shutil.rmtree(dest)
                else:
                    out = work / f"curl-{i}.bin"
                    wall, cpu = curl(url, out, durable=method == "curl+fsync", cacert=tls[0] if tls else None)
                    out.unlink()
                walls[method].append(wall)
                cpus[method].append(cpu)
    finally:
        try:
            registry.stop()
        finally:
            shutil.rmtree(work, ignore_errors=True)

    mb = size / 1e6
    gib = size / 2**30
    rate = {m: mb / statistics.median(walls[m]) for m in METHODS}
    over = "HTTPS" if args.tls else "plain HTTP"
    print(f"Pull of a {args.size_mib} MiB blob from a local docker-registry over {over}, median of {args.runs} runs each "
          "(rotating order)\n")
    print("| method | median time (s) | median MB/s | median CPU s/GiB | runs (s) |")
    print("|---|---:|---:|---:|---|")
    for m, label in METHODS.items():
        print(f"| {label} | {statistics.median(walls[m]):.2f} | {rate[m]:.0f} | "
              f"{statistics.median(cpus[m]) / gib:.2f} | {', '.join(f'{t:.2f}' for t in walls[m])} |")
    print(f"\nratio ours/curl: {rate['ours'] / rate['curl']:.2f} (target >= 0.80)")
    print(f"ratio ours/(curl, then fsync): {rate['ours'] / rate['curl+fsync']:.2f}")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminated)
    signal.signal(signal.SIGHUP, _terminated)
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(130)
