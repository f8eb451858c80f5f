"""``ollamalike pull``, ``push`` and ``import-ollama``: daemon clients that render progress.

The transfers run inside the daemon (/api/pull, /api/push, /api/import); these commands only
stream the status lines and draw them (``cli.progress``). Errors end the command with one
``Error: ...`` line and a non-zero status (``cli.main`` does that).
"""

from __future__ import annotations

from pathlib import Path

import click

from ollamalike.cli.progress import Progress
from ollamalike.client import LOCAL_HOSTS, ensure_daemon
from ollamalike.config import load_config
from ollamalike.errors import BadRequest


def _run(path: str, body: dict[str, object]) -> None:
    client = ensure_daemon(load_config())
    progress = Progress()
    try:
        for item in client.stream("POST", path, body):
            progress.update(item)
    finally:
        progress.finish()


@click.command()
@click.argument("model", required=False)
@click.option("--insecure", is_flag=True, help="Use plain HTTP for the registry (no TLS).")
@click.option("--all-from", "all_from", metavar="REGISTRY/NAMESPACE",
              help="Pull every model (every tag) of a registry namespace, listed by its /v2/_catalog.")
def pull(model: str | None, insecure: bool, all_from: str | None) -> None:
    """Pull a model from a registry (or hf.co/<user>/<repo>[:quant] from Hugging Face)."""
    if (model is None) == (all_from is None):
        raise BadRequest("pull needs a MODEL or --all-from REGISTRY/NAMESPACE (not both)")
    if model is not None:
        _run("/api/pull", {"model": model, "insecure": insecure, "stream": True})
        return
    client = ensure_daemon(load_config())
    names = client.json("POST", "/api/catalog", {"from": all_from, "insecure": insecure}).get("models") or []
    if not names:
        raise BadRequest(f"no models found in {all_from}")
    for index, name in enumerate(names, 1):
        click.echo(f"pulling {name} ({index}/{len(names)})", err=True)
        _run("/api/pull", {"model": name, "insecure": insecure, "stream": True})


@click.command()
@click.argument("model")
@click.option("--insecure", is_flag=True, help="Use plain HTTP for the registry (no TLS).")
def push(model: str, insecure: bool) -> None:
    """Push a model to a registry."""
    _run("/api/push", {"model": model, "insecure": insecure, "stream": True})


@click.command("import-ollama")
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
def import_ollama(directory: Path | None) -> None:
    """Register the models of an Ollama models directory (default ~/.ollama/models) without copying blobs."""
    config = load_config()
    if config.host not in LOCAL_HOSTS:
        # The daemon reads the directory itself: a remote one would look on its own disk.
        raise BadRequest(f"import-ollama needs the ollamalike server on this machine (OLLAMALIKE_HOST is {config.host})")
    root = (directory or Path("~/.ollama/models")).expanduser().resolve()
    if not root.is_dir():
        raise BadRequest(f"directory not found: {root}")
    _run("/api/import", {"path": str(root), "stream": True})
