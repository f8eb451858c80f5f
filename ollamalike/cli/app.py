"""The ``ollamalike`` click group and its error handling. Commands load lazily so start-up stays fast.

Each command lives in a submodule and is imported only when invoked: ``ollamalike list`` never
imports aiohttp or llama_cpp (``serve`` does). Errors from any command become one line on stderr
and a non-zero exit status. ``ollamalike.cli.main`` comes here for whatever cli/fast.py declines.
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
    """Run the click app on ``argv`` (default: ``sys.argv[1:]``) and exit with the command's status."""
    try:
        result = cli.main(args=argv, prog_name="ollamalike", standalone_mode=False)
    except OllamalikeError as e:
        click.echo(f"Error: {e.message}", err=True)
        sys.exit(1)
    except click.UsageError as e:
        if not (argv if argv is not None else sys.argv[1:]):
            # Plain `ollamalike`: the help, as Ollama prints it.
            click.echo(e.ctx.get_help() if e.ctx is not None else cli.get_help(click.Context(cli)))
            sys.exit(0)
        # One line, like every other error; the hint names the command's help.
        sub = e.ctx.info_name if e.ctx is not None and e.ctx.parent is not None else None
        where = f"ollamalike {sub} --help" if sub else "ollamalike --help"
        click.echo(f"Error: {e.format_message()} (see '{where}')", err=True)
        sys.exit(2)
    except click.ClickException as e:
        click.echo(f"Error: {e.format_message()}", err=True)
        sys.exit(e.exit_code)
    except click.Abort:
        click.echo("", err=True)
        sys.exit(130)
    # Commands signal failure by raising; an int result is an explicit exit status (e.g. --help's 0).
    sys.exit(result if isinstance(result, int) else 0)
