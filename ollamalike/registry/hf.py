"""Hugging Face GGUF pulls: ``hf.co/<user>/<repo>[:<quant>]`` through huggingface_hub.

The quantization tag picks the GGUF file (case-insensitive match on the file name; ``latest``
means Q4_K_M as in Ollama, falling back to the repository's only/first GGUF). The file is
fetched with ``hf_hub_download`` (which honours HF_ENDPOINT, HF_TOKEN and its own cache), then
hard-linked into the store when possible (copied otherwise) and verified against the LFS sha256.
The manifest gets a template layer and stop parameters when the GGUF's chat template matches a
named template; otherwise no template, so the GGUF's own Jinja template is used at render time.
A repository with an ``mmproj*.gguf`` (a vision model's projector) gives the model its projector
layer too (``choose_mmproj``: the model's quantization, else F16, else the first).
A split quant (``x-00001-of-00003.gguf``) is pulled shard by shard into one model layer each, in
shard order (the runner loads them with llama.cpp's split loading).
"""

from __future__ import annotations

import asyncio
import io
import os
import re
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from ollamalike.config import Config
from ollamalike.errors import BadRequest, NotFound, OllamalikeError, RegistryError
from ollamalike.jsontypes import JSONObject
from ollamalike.names import ModelName
from ollamalike.registry.import_ollama import link_blob
from ollamalike.store import Pins, Store
from ollamalike.store.manifest import (
    CONFIG_MEDIA_TYPE,
    MEDIA_MODEL,
    MEDIA_PARAMS,
    MEDIA_PROJECTOR,
    MEDIA_TEMPLATE,
    Descriptor,
    build_config,
    build_manifest,
    go_json,
)

if TYPE_CHECKING:
    pass

DEFAULT_QUANT = "Q4_K_M"
_SPLIT_RE = re.compile(r"-\d{5}-of-\d{5}\.gguf$", re.IGNORECASE)
_QUANT_RE = re.compile(r"(?<![A-Za-z0-9])(I?Q\d(?:_[A-Z0-9]+)*|BF16|F16|F32)(?![A-Za-z0-9])", re.IGNORECASE)


def _quant_matches(filename: str, quant: str) -> bool:
    base = filename.rsplit("/", 1)[-1][: -len(".gguf")]
    pattern = r"(?:^|[-._])" + re.escape(quant) + r"(?:$|[-.])"
    return re.search(pattern, base, re.IGNORECASE) is not None


def available_quants(ggufs: list[str]) -> list[str]:
    found: list[str] = []
    for f in ggufs:
        m = _QUANT_RE.findall(f.rsplit("/", 1)[-1][: -len(".gguf")].replace(".", "-"))
        label = m[-1].upper() if m else f
        if label not in found:
            found.append(label)
    return found


def choose_gguf(files: list[str], tag: str) -> str:
    """The repository file for a quantization tag; BadRequest naming the choices when none fits."""
    ggufs = sorted(
        (f for f in files if f.lower().endswith(".gguf") and "mmproj" not in f.lower()),
        key=lambda f: (f.count("/"), f),
    )
    if not ggufs:
        raise BadRequest("this Hugging Face repository has no GGUF files")
    want = DEFAULT_QUANT if tag.lower() == "latest" else tag
    matches = [f for f in ggufs if _quant_matches(f, want)]
    if not matches and tag.lower() == "latest":
        matches = ggufs
    if not matches:
        raise BadRequest(
            f"no GGUF file for quantization {tag!r} in this repository; available: {', '.join(available_quants(ggufs))}"
        )
    chosen = matches[0]
    if (m := _SPLIT_RE.search(chosen)) and not m.group(0).lower().startswith("-00001-"):
        raise BadRequest(f"split GGUF {chosen} is not a first shard (-00001-of-N)")
    return chosen


def _progress_class(report: Callable[[int, int], None]) -> type[object]:
    from tqdm.auto import tqdm

    class Reporter(tqdm):  # type: ignore[misc,valid-type]
        def __init__(self, *args: object, **kwargs: object) -> None:
            kwargs["file"] = io.StringIO()  # huggingface_hub's bar must not draw on the daemon's stderr
            kwargs.pop("disable", None)
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            out: bool | None = super().update(n)
            report(int(self.n), int(self.total or 0))
            return out

    return Reporter


def _hf_errors(e: Exception, repo_id: str) -> OllamalikeError:
    kind = type(e).__name__
    if kind in ("RepositoryNotFoundError", "GatedRepoError"):
        return NotFound(f"Hugging Face repository {repo_id} not found or not accessible")
    if kind in ("EntryNotFoundError", "RemoteEntryNotFoundError"):
        return NotFound(f"file not found in Hugging Face repository {repo_id}")
    if kind == "LocalEntryNotFoundError" or kind == "OfflineModeIsEnabled":
        return RegistryError(f"cannot reach Hugging Face for {repo_id} (offline?)")
    return RegistryError(f"Hugging Face download of {repo_id} failed: {e}")


def choose_mmproj(files: list[str], model_file: str) -> str | None:
    """The repository's projector (``mmproj*.gguf``) for a vision model, None when it has none: the one
    of the model's quantization if there is one, else F16, else the first."""
    projs = sorted(f for f in files if f.lower().endswith(".gguf") and "mmproj" in f.rsplit("/", 1)[-1].lower())
    if not projs:
        return None
    quants = available_quants([model_file])
    for want in (quants[0] if quants else "", "F16"):
        hit = [f for f in projs if want and _quant_matches(f, want)]
        if hit:
            return hit[0]
    return projs[0]


def shard_files(files: list[str], chosen: str) -> list[str]:
    """The chosen file, or all shards of the split GGUF it is the first of, in order (each must exist)."""
    from ollamalike.names import gguf_shard_names

    folder, _, base = chosen.rpartition("/")
    names = gguf_shard_names(base)
    if names is None:
        return [chosen]
    paths = [f"{folder}/{n}" if folder else n for n in names]
    present = set(files)
    missing = [p for p in paths if p not in present]
    if missing:
        raise BadRequest(f"split GGUF shard {missing[0]} is missing from this repository")
    return paths


async def pull_hf(store: Store, config: Config, name: ModelName) -> AsyncIterator[JSONObject]:
    import huggingface_hub

    repo_id = f"{name.namespace}/{name.model}"
    api = huggingface_hub.HfApi()
    yield {"status": "pulling manifest"}
    try:
        files = await asyncio.to_thread(api.list_repo_files, repo_id)
        filenames = shard_files(files, choose_gguf(files, name.tag))
        projector = choose_mmproj(files, filenames[0])
        wanted = filenames + ([projector] if projector else [])
        infos = await asyncio.to_thread(api.get_paths_info, repo_id, wanted)
    except OllamalikeError:
        raise
    except Exception as e:
        raise _hf_errors(e, repo_id) from None
    by_path = {str(getattr(i, "path", "")): i for i in infos}
    fetched: list[tuple[str, str, int]] = []  # (local path, digest, size): the shards in order, then the projector
    for filename in wanted:
        async for status in _download(store, repo_id, filename, by_path.get(filename)):
            if "path" in status:
                fetched.append((str(status["path"]), str(status["digest"]), int(str(status["total"]))))
            else:
                yield status
    with store.pin([d for _, d, _ in fetched]) as pins:
        shards = fetched[: len(filenames)]
        manifest = await asyncio.to_thread(_build_manifest, store, pins, shards, fetched[len(filenames):])
        yield {"status": "writing manifest"}
        await asyncio.to_thread(store.put_manifest, name, manifest)
    yield {"status": "success"}


async def _download(store: Store, repo_id: str, filename: str, info: object) -> AsyncIterator[JSONObject]:
    """One repository file into the store, with Ollama's progress lines; the last item (with "path") is the result."""
    import huggingface_hub

    # huggingface_hub's RepoFile has size and lfs; a RepoFolder (a directory named like a GGUF) has neither.
    size = int(getattr(info, "size", 0) or 0)
    lfs = getattr(info, "lfs", None)
    sha = getattr(lfs, "sha256", None) if lfs is not None else None
    expected = f"sha256:{sha}" if isinstance(sha, str) and len(sha) == 64 else None
    status = f"pulling {(sha or filename)[:12]}"
    queue: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    def report(done: int, total: int) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, (done, total))

    def download() -> str:
        return str(
            huggingface_hub.hf_hub_download(repo_id, filename, tqdm_class=_progress_class(report))
        )

    task = asyncio.create_task(asyncio.to_thread(download))
    yield {"status": status, "digest": expected or "", "total": size, "completed": 0}
    while not task.done():
        getter = asyncio.create_task(queue.get())
        await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
        if getter.done():
            done, total = getter.result()
            yield {"status": status, "digest": expected or "", "total": total or size, "completed": done}
        else:
            getter.cancel()
    try:
        path = task.result()
    except Exception as e:
        raise _hf_errors(e, repo_id) from None
    yield {"status": "verifying sha256 digest"}
    digest, size = await asyncio.to_thread(link_blob, store, path, expected)
    yield {"status": status, "digest": digest, "total": size, "completed": size}
    yield {"path": path, "digest": digest, "total": size}


def _build_manifest(store: Store, pins: Pins, files: list[tuple[str, str, int]],
                    projectors: list[tuple[str, str, int]]) -> bytes:
    """Model layers (several for a split GGUF, in shard order), the projector, then the detected
    template and stops."""
    from ollamalike.gguf_info import read_gguf_info, read_split_gguf_info

    paths: list[str | os.PathLike[str]] = [path for path, _, _ in files]
    info = read_split_gguf_info(paths) if len(paths) > 1 else read_gguf_info(paths[0])
    layers = [Descriptor(MEDIA_MODEL, digest, size) for _, digest, size in files]
    for proj_path, proj_digest, proj_size in projectors:
        if read_gguf_info(proj_path).architecture != "clip":
            raise BadRequest(f"{proj_path.rsplit('/', 1)[-1]} in this repository is not a CLIP projector GGUF")
        layers.append(Descriptor(MEDIA_PROJECTOR, proj_digest, proj_size))
    named = _detect(info.chat_template)
    if named is not None:
        template_text, stops = named
        t_digest, t_size = store.add_blob_bytes(template_text.encode())
        pins.add(t_digest)
        layers.append(Descriptor(MEDIA_TEMPLATE, t_digest, t_size))
        if stops:
            p_digest, p_size = store.add_blob_bytes(go_json({"stop": stops}))
            pins.add(p_digest)
            layers.append(Descriptor(MEDIA_PARAMS, p_digest, p_size))
    config = build_config(
        model_family=info.architecture,
        model_families=[info.architecture, "clip"] if projectors else [info.architecture],
        model_type=info.parameter_size,
        file_type=info.file_type,
        diff_ids=[layer.digest for layer in layers],
    )
    c_digest, c_size = store.add_blob_bytes(config)
    pins.add(c_digest)
    return build_manifest(Descriptor(CONFIG_MEDIA_TYPE, c_digest, c_size), layers)


def _detect(chat_template: str | None) -> tuple[str, list[str]] | None:
    """(Go template text, stop strings) of the named template the GGUF's Jinja template matches."""
    if not chat_template:
        return None
    from ollamalike.template import detect_template

    named = detect_template(chat_template)
    if named is None:
        return None
    return named.template, list(named.stop)
