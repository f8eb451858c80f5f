"""Model-management commands: ``create``, ``list``/``ls``, ``show``, ``cp``, ``rm``.

They are clients of the daemon (started on demand by ``ensure_daemon``) and import neither aiohttp
nor llama_cpp. ``create`` parses the Modelfile here, as Ollama's CLI does: local FROM/ADAPTER files
are uploaded as blobs and the structured request goes to ``POST /api/create``.
"""

from __future__ import annotations

import os
import stat
import struct
import sys
from pathlib import Path
from typing import Any

import click

from ollamalike.cli.views import SHOW_FIELDS, SHOW_FIELDS_ERROR, list_table, show_text
from ollamalike.client import Client, ensure_daemon
from ollamalike.config import load_config
from ollamalike.errors import BadRequest
from ollamalike.names import ModelName


def _client() -> Client:
    return ensure_daemon(load_config())


# -- create --------------------------------------------------------------------------------------
def _resolve_path(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _looks_like_path(value: str) -> bool:
    return value.startswith(("/", "./", "../", "~", ".\\")) or value.lower().endswith(".gguf") or "\\" in value


class _Progress:
    """``copying file sha256:… NN%``: redrawn in place on a terminal, one final line otherwise."""

    def __init__(self, digest_hint: str) -> None:
        self.label = f"copying file {digest_hint}"
        self.tty = sys.stdout.isatty()
        self.last = -1

    def __call__(self, done: int, total: int) -> None:
        percent = 100 if total == 0 else done * 100 // total
        if self.tty and percent != self.last:
            click.echo(f"\r{self.label} {percent}%", nl=False)
        self.last = percent

    def finish(self) -> None:
        if self.tty:
            click.echo(f"\r{self.label} 100%")
        else:
            click.echo(f"{self.label} 100%")


GGUF_VERSIONS = (2, 3)


def check_gguf_header(path: Path, what: str) -> None:
    """Refuse anything but a regular file starting with a GGUF header, reading at most its first 24 bytes.

    Checked before hashing or uploading, as Ollama's CLI does: a wrong file costs no transfer and leaves
    no blob, and a device (/dev/zero) or a FIFO is refused at once instead of being read forever."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise BadRequest(f"{what} file not found: {path}") from None
    except (OSError, ValueError) as e:
        raise BadRequest(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise BadRequest(f"{what} {path} is a directory: only GGUF files are supported")
    if not stat.S_ISREG(st.st_mode):
        raise BadRequest(f"{what} {path} is not a regular file (a device or a pipe?): only GGUF files are supported")
    try:
        # O_NONBLOCK: a file swapped for a FIFO after the stat cannot block the open.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise BadRequest(f"{what} {path} is not a regular file: only GGUF files are supported")
            head = os.read(fd, 24)
        finally:
            os.close(fd)
    except OSError as e:
        raise BadRequest(f"cannot read {path}: {e.strerror}") from None
    if len(head) < 24 or head[:4] != b"GGUF":
        raise BadRequest(f"{what} {path} is not a GGUF file")
    version = struct.unpack("<I", head[4:8])[0]
    if version not in GGUF_VERSIONS:
        raise BadRequest(f"{what} {path} is a GGUF file of unsupported version {version} (supported: 2 and 3)")


def _upload(client: Client, path: Path, what: str) -> str:
    check_gguf_header(path, what)
    from ollamalike.client import file_sha256

    try:
        digest = "sha256:" + file_sha256(path)
    except OSError as e:
        raise BadRequest(f"cannot read {path}: {e.strerror}") from None
    progress = _Progress(digest)
    uploaded = client.upload_blob(path, progress=progress)
    progress.finish()
    return uploaded


def _checkpoint_files(directory: Path) -> list[Path]:
    """The files of a Hugging Face directory that conversion reads, as Ollama's client gathers them."""
    weights = sorted(directory.glob("*.safetensors"))
    if not weights:
        raise BadRequest(f"FROM {directory} is a directory without *.safetensors files (a GGUF must be named as a file)")
    extra = sorted(directory.glob("*.json")) + sorted(directory.glob("*/*.json")) + sorted(directory.glob("tokenizer.model"))
    return weights + [p for p in extra if p.is_file()]


def _upload_dir(client: Client, directory: Path) -> dict[str, str]:
    """Upload a safetensors directory file by file: ``files`` maps relative names to digests."""
    files: dict[str, str] = {}
    for path in _checkpoint_files(directory):
        name = path.relative_to(directory).as_posix()
        progress = _Progress(name)
        files[name] = client.upload_blob(path, progress=progress)
        progress.finish()
    return files


def _split_shards(first: Path) -> list[Path] | None:
    """All shards of a split GGUF named by its first shard (``x-00001-of-00003.gguf``), else None."""
    from ollamalike.names import gguf_shard_names as shard_names

    names = shard_names(first.name)
    return [first.parent / n for n in names] if names else None


def _read_modelfile(modelfile_path: Path) -> str:
    """The Modelfile's text: UTF-8, or UTF-16 after a byte order mark (Windows editors save that)."""
    from ollamalike.modelfile import decode

    try:
        data = modelfile_path.read_bytes()
    except FileNotFoundError:
        raise BadRequest(f"specified Modelfile wasn't found: {modelfile_path}") from None
    except IsADirectoryError:
        raise BadRequest(f"specified Modelfile is a directory: {modelfile_path}") from None
    except OSError as e:
        raise BadRequest(f"cannot read Modelfile {modelfile_path}: {e}") from None
    try:
        return decode(data)
    except BadRequest as e:
        raise BadRequest(f"cannot read Modelfile {modelfile_path}: {e.message}") from None


def _model_files(client: Client, value: str, base: Path, what: str = "FROM") -> dict[str, str] | None:
    """Upload what a FROM/DRAFT value names on this machine: ``files`` for it, or None for a model name."""
    source = _resolve_path(value, base)
    if source.is_dir():
        return _upload_dir(client, source)
    if (shards := _split_shards(source)) is not None:
        return {p.name: _upload(client, p, what) for p in shards}
    if source.exists() or _looks_like_path(value):
        return {source.name: _upload(client, source, what)}
    return None


def build_create_request(client: Client, name: str, modelfile_path: Path) -> dict[str, Any]:
    """Parse the Modelfile, upload its local files, and return the ``/api/create`` body.

    As Ollama's client does: files of every FROM line merge into ``files``, and of the model names
    the last one is ``from`` (the daemon refuses a Modelfile that names both). A DRAFT file goes in
    ``draft_files``; a DRAFT model name in ``draft`` (our extension: Ollama's DRAFT takes files only).
    """
    from ollamalike.modelfile import parse
    from ollamalike.options import params_to_json

    mf = parse(_read_modelfile(modelfile_path))
    base = modelfile_path.resolve().parent
    click.echo("gathering model components")
    body: dict[str, Any] = {"model": name}
    files: dict[str, str] = {}
    for value in mf.froms:
        found = _model_files(client, value, base)
        if found is None:
            body["from"] = value
            continue
        for fname, digest in found.items():
            # Two FROM files with one base name (a/model.gguf, b/model.gguf) must both arrive.
            key = fname if fname not in files or files[fname] == digest else f"{len(files)}-{fname}"
            files[key] = digest
    if files:
        body["files"] = files
    if mf.adapters:
        adapters: dict[str, str] = {}
        for value in mf.adapters:
            path = _resolve_path(value, base)
            if path.is_dir():  # a PEFT directory: its files, as Ollama's client sends them
                adapters.update(_upload_dir(client, path))
                continue
            adapters[path.name] = _upload(client, path, "ADAPTER")
        body["adapters"] = adapters
    if mf.draft is not None:
        from ollamalike.modelfile import check_draft_path

        check_draft_path(_resolve_path(mf.draft, base), [_resolve_path(v, base) for v in mf.froms])
        draft = _model_files(client, mf.draft, base, "DRAFT")
        if draft is None:
            body["draft"] = mf.draft
        else:
            body["draft_files"] = draft
    if mf.template is not None:
        body["template"] = mf.template
    if mf.system:
        body["system"] = mf.system
    elif mf.system is not None:
        body["clear_system"] = True  # SYSTEM "": an empty "system" would mean "not given"
    for key in ("renderer", "parser", "requires"):
        if (value := getattr(mf, key)) is not None:
            body[key] = value
    if mf.license:
        body["license"] = list(mf.license)
    if mf.parameters:
        body["parameters"] = params_to_json(mf.parameters)
    if mf.messages:
        body["messages"] = [dict(m) for m in mf.messages]
    return body


@click.command()
@click.argument("name")
@click.option("-f", "--file", "file", default=None, help="Name of the Modelfile (default: ./Modelfile).")
@click.option("-q", "--quantize", default=None, help="Quantize model to this level (e.g. q4_0).")
@click.option("--draft-quantize", default=None, help="Quantize the DRAFT model to this level (e.g. q8_0).")
def create(name: str, file: str | None, quantize: str | None, draft_quantize: str | None) -> None:
    """Create a model from a Modelfile."""
    ModelName.parse(name)
    path = Path(file).expanduser() if file else Path.cwd() / "Modelfile"
    client = _client()
    body = build_create_request(client, name, path)
    if quantize:
        body["quantize"] = quantize
    if draft_quantize:
        if "draft" not in body and "draft_files" not in body:
            raise BadRequest("--draft-quantize requires a DRAFT model")
        body["draft_quantize"] = draft_quantize
    last = None
    for status in client.stream("POST", "/api/create", body):
        line = status.get("status")
        if line and line != last:
            click.echo(line)
            last = line


# -- list ----------------------------------------------------------------------------------------
@click.command("list")
@click.argument("prefix", required=False)
def list_models(prefix: str | None) -> None:
    """List models."""
    data = _client().json("GET", "/api/tags")
    click.echo(list_table(data.get("models") or [], prefix))


# -- show ----------------------------------------------------------------------------------------
@click.command()
@click.argument("name")
@click.option("--license", "show_license", is_flag=True, help="Show the license of a model.")
@click.option("--modelfile", is_flag=True, help="Show the Modelfile of a model.")
@click.option("--parameters", is_flag=True, help="Show the parameters of a model.")
@click.option("--template", is_flag=True, help="Show the template of a model.")
@click.option("--system", is_flag=True, help="Show the system message of a model.")
@click.option("-v", "--verbose", is_flag=True, help="Show detailed model information.")
def show(
    name: str, show_license: bool, modelfile: bool, parameters: bool, template: bool, system: bool, verbose: bool
) -> None:
    """Show information for a model."""
    flags = {"license": show_license, "modelfile": modelfile, "parameters": parameters, "system": system, "template": template}
    chosen = [f for f in SHOW_FIELDS if flags[f]]
    if len(chosen) > 1:
        raise BadRequest(SHOW_FIELDS_ERROR)
    resp = _client().json("POST", "/api/show", {"model": name, "verbose": verbose})
    text = show_text(resp, chosen[0] if chosen else None, verbose)
    if text is not None:
        click.echo(text)


# -- cp / rm -------------------------------------------------------------------------------------
@click.command()
@click.argument("source")
@click.argument("destination")
def copy(source: str, destination: str) -> None:
    """Copy a model."""
    _client().json("POST", "/api/copy", {"source": source, "destination": destination})
    click.echo(f"copied '{source}' to '{destination}'")


@click.command()
@click.argument("names", nargs=-1, required=True)
def remove(names: tuple[str, ...]) -> None:
    """Remove one or more models."""
    client = _client()
    for name in names:
        client.json("DELETE", "/api/delete", {"model": name})
        click.echo(f"deleted '{name}'")
