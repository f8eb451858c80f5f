"""The ``ollamalike`` command group. Commands load lazily so start-up stays fast.

Each command lives in a submodule and is imported only when invoked: ``ollamalike list`` never
imports aiohttp or llama_cpp (``serve`` does). Errors from any command become one line on stderr
and a non-zero exit status.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from ollamalike import __version__
from ollamalike.errors import OllamalikeError

# command name -> "module:attribute"; aliases point at the same command.
COMMANDS: dict[str, str] = {
    "serve": "ollamalike.cli.serve:serve",
    "create": "ollamalike.cli.models:create",
    "show": "ollamalike.cli.models:show",
    "list": "ollamalike.cli.models:list_models",
    "ls": "ollamalike.cli.models:list_models",
    "cp": "ollamalike.cli.models:copy",
    "rm": "ollamalike.cli.models:remove",
    "run": "ollamalike.cli.run:run",
    "ps": "ollamalike.cli.run:ps",
    "stop": "ollamalike.cli.run:stop",
    "pull": "ollamalike.cli.registry:pull",
    "push": "ollamalike.cli.registry:push",
    "import-ollama": "ollamalike.cli.registry:import_ollama",
    "render": "ollamalike.cli.render:render",
    "info": "ollamalike.cli.info:info",
}

HIDDEN_ALIASES = {"ls"}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if name not in HIDDEN_ALIASES]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, _, attr = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name == module_name:
                return None
            raise
        command: click.Command | None = getattr(module, attr, None)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-v", "--version", prog_name="ollamalike", message="ollamalike version is %(version)s")
def cli() -> None:
    """Large language model runner, compatible with Ollama."""


def main(argv: list[str] | None = None) -> Any:
    try:
        return cli.main(args=argv, prog_name="ollamalike", standalone_mode=True)
    except OllamalikeError as e:
        click.echo(f"Error: {e.message}", err=True)
        sys.exit(1)
