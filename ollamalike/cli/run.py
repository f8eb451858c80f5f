"""``ollamalike run`` (one-shot or the interactive REPL), ``ps`` and ``stop``.

Clients of the daemon through ``ollamalike.client`` (stdlib HTTP); no aiohttp, no llama_cpp. The
answer streams to stdout as it is generated, word-wrapped at the terminal width on a terminal;
``--verbose`` prints Ollama's timing statistics to stderr.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from ollamalike.cli.chat import Printer, format_stats, parse_think_flag, show_or_pull, stream_chat
from ollamalike.cli.views import ps_table
from ollamalike.client import Client, ensure_daemon
from ollamalike.config import load_config
from ollamalike.errors import BadRequest, NotFound
from ollamalike.names import ModelName


def _client() -> Client:
    return ensure_daemon(load_config())


def _keep_alive(value: str | None) -> str | float | None:
    if value is None:
        return None
    from ollamalike.config import parse_duration

    parse_duration(value)  # a bad duration fails here, with the CLI's one-line error
    return value


class _RunCommand(click.Command):
    """``run`` takes Ollama's spellings: ``--truncate=false`` / ``--truncate=true`` of its flag, and
    ``--think`` as a flag with ``--think=LEVEL`` taking a level (a bare ``--think`` never takes the
    next word: ``run qwen --think "why?"`` is a prompt)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        out: list[str] = []
        for i, arg in enumerate(args):
            if arg == "--":
                out += args[i:]
                break
            if arg.startswith("--think="):
                out += ["--think-level", arg[len("--think="):]]
                continue
            if arg.startswith("--truncate="):
                value = arg.partition("=")[2]
                try:
                    arg = "--truncate" if click.BOOL.convert(value, None, ctx) else "--no-truncate"
                except click.BadParameter:
                    raise click.BadParameter(f"{value!r} is not a valid boolean", ctx, param_hint="'--truncate'") from None
            out.append(arg)
        return super().parse_args(ctx, out)


def _read_stdin() -> str:
    if sys.stdin is None or sys.stdin.isatty():
        return ""
    return sys.stdin.read()


@click.command(cls=_RunCommand)
@click.argument("model")
@click.argument("prompt", nargs=-1)
@click.option("--format", "fmt", default=None, help='Response format (e.g. "json").')
@click.option("--keepalive", default=None, help='How long to keep the model loaded (e.g. "5m", "0", "-1").')
@click.option("--verbose", is_flag=True, help="Show timings for the response.")
@click.option("--nowordwrap", is_flag=True, help="Don't wrap words to the next line automatically.")
@click.option("--think", "think_on", is_flag=True,
              help="Enable thinking; --think=LEVEL: true/false or high/medium/low/max for supported models.")
@click.option("--think-level", "think_flag", hidden=True, default=None)
@click.option("--nothink", is_flag=True, help="Disable thinking (the same as --think=false).")
@click.option("--hidethinking", is_flag=True, help="Hide the thinking output (if the model thinks).")
@click.option("--insecure", is_flag=True, help="Use plain HTTP if the model has to be pulled from a registry.")
@click.option("--truncate/--no-truncate", default=None,
              help="For embedding models: truncate inputs longer than the context (the default); "
                   "--truncate=false (or --no-truncate) makes that an error instead.")
@click.option("--dimensions", type=click.IntRange(min=1), default=None,
              help="For embedding models: shorten the embedding to this many dimensions.")
def run(model: str, prompt: tuple[str, ...], fmt: str | None, keepalive: str | None, verbose: bool,
        nowordwrap: bool, think_on: bool, think_flag: str | None, nothink: bool, hidethinking: bool,
        insecure: bool, truncate: bool | None, dimensions: int | None) -> None:
    """Run a model: answer PROMPT, or start an interactive chat when there is none."""
    think = False if nothink else parse_think_flag(think_flag if think_flag is not None else
                                                   "true" if think_on else None)
    if fmt is not None and fmt != "json":
        raise BadRequest(f"invalid format {fmt!r}: only \"json\" is supported")
    keep_alive = _keep_alive(keepalive)
    piped = _read_stdin()
    parts = ([piped] if piped else []) + list(prompt)
    client = _client()
    info = show_or_pull(client, model, insecure)
    caps = info.get("capabilities") or []
    if parts and "completion" not in caps and "embedding" in caps:
        embed: dict[str, object] = {"model": model, "input": " ".join(parts), "keep_alive": keep_alive}
        if truncate is not None:
            embed["truncate"] = truncate
        if dimensions is not None:
            embed["dimensions"] = dimensions
        result = client.json("POST", "/api/embed", embed)
        click.echo(json.dumps(result["embeddings"][0]))
        return
    if parts:
        message: dict[str, Any] = {"role": "user", "content": " ".join(parts)}
        if {"vision", "audio"} & set(caps):  # image (and .wav) paths in the prompt attach them, as Ollama's run does
            from ollamalike.cli.images import extract_images

            message["content"], images = extract_images(message["content"])
            if images:
                message["images"] = images
        body: dict[str, Any] = {"model": model, "messages": [message], "stream": True}
        if fmt:
            body["format"] = fmt
        if keep_alive is not None:
            body["keep_alive"] = keep_alive
        if think is not None:
            body["think"] = think
        printer = Printer(sys.stdout, wordwrap=not nowordwrap, show_thinking=not hidethinking)
        try:
            _, final = stream_chat(client, body, printer)
        except KeyboardInterrupt:
            sys.exit(130)
        if verbose and final:
            click.echo(format_stats(final), err=True)
        return
    from ollamalike.cli.repl import Repl

    Repl(client, model, info, fmt=fmt, keep_alive=keep_alive, verbose=verbose, wordwrap=not nowordwrap,
         think=think, hidethinking=hidethinking).loop()


# -- ps / stop ---------------------------------------------------------------------------------------
@click.command()
def ps() -> None:
    """List running models."""
    data = _client().json("GET", "/api/ps")
    click.echo(ps_table(data.get("models") or []))


@click.command()
@click.argument("model")
def stop(model: str) -> None:
    """Stop a running model (unload it now)."""
    name = ModelName.parse(model)
    client = _client()
    running = client.json("GET", "/api/ps").get("models") or []
    wanted = {name.display.lower(), str(name).lower()}
    if not any(str(m.get("name", "")).lower() in wanted or str(m.get("model", "")).lower() in wanted
               for m in running):
        raise NotFound(f'couldn\'t find model "{model}" to stop')
    client.json("POST", "/api/generate", {"model": model, "keep_alive": 0, "stream": False})
