"""The interactive ``run`` session: readline editing and history, slash commands, streamed answers.

State is the conversation (messages), session options, system prompt and display switches.
Ctrl-C while an answer streams closes the stream (the daemon frees the slot); Ctrl-C at the
prompt clears the line (with a hint when it was empty); Ctrl-D or /bye ends the session.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

import click

from ollamalike.cli.chat import Printer, format_stats, parse_think_flag, show_or_pull, stream_chat
from ollamalike.client import Client
from ollamalike.config import load_config
from ollamalike.errors import OllamalikeError

PROMPT = ">>> "
CONTINUATION = "... "
EXIT_HINT = "Use Ctrl + d or /bye to exit."

HELP = """Available Commands:
  /set            Set session variables
  /show           Show model information
  /load <model>   Load a session or model
  /save <model>   Save your current session
  /clear          Clear session context
  /bye            Exit
  /?, /help       Help for a command
  /? shortcuts    Help for keyboard shortcuts

Use \"\"\" to begin a multi-line message.
"""

HELP_SET = """Available Commands:
  /set parameter ...     Set a parameter
  /set system <string>   Set system message
  /set history           Enable history
  /set nohistory         Disable history
  /set wordwrap          Enable wordwrap
  /set nowordwrap        Disable wordwrap
  /set format json       Enable JSON mode
  /set noformat          Disable formatting
  /set verbose           Show LLM stats
  /set quiet             Disable LLM stats
  /set think [level]     Enable thinking (a level: high, medium, low, max)
  /set nothink           Disable thinking
"""

HELP_SHOW = """Available Commands:
  /show info         Show details for this model
  /show license      Show model license
  /show modelfile    Show Modelfile for this model
  /show parameters   Show parameters for this model
  /show system       Show system message
  /show template     Show prompt template
"""

HELP_SHORTCUTS = """Available keyboard shortcuts:
  Ctrl + a            Move to the beginning of the line (Home)
  Ctrl + e            Move to the end of the line (End)
   Alt + b            Move back (left) one word
   Alt + f            Move forward (right) one word
  Ctrl + k            Delete the sentence after the cursor
  Ctrl + u            Delete the sentence before the cursor
  Ctrl + w            Delete the word before the cursor

  Ctrl + l            Clear the screen
  Ctrl + c            Stop the model from responding
  Ctrl + d            Exit ollamalike (/bye)
"""

HELP_PARAMETERS = """Parameters:
  /set parameter seed <int>             Random number seed
  /set parameter num_predict <int>      Max number of tokens to predict
  /set parameter top_k <int>            Pick from top k num of tokens
  /set parameter top_p <float>          Pick token based on sum of probabilities
  /set parameter min_p <float>          Pick token based on top token probability * min_p
  /set parameter num_ctx <int>          Set the context size
  /set parameter temperature <float>    Set creativity level
  /set parameter repeat_penalty <float> How strongly to penalize repetitions
  /set parameter repeat_last_n <int>    Set how far back to look for repetitions
  /set parameter num_gpu <int>          The number of layers to send to the GPU
  /set parameter stop <string> <string> ...   Set the stop parameters
"""


class Repl:
    def __init__(self, client: Client, model: str, info: dict[str, Any], fmt: str | None = None,
                 keep_alive: str | float | None = None, verbose: bool = False, wordwrap: bool = True,
                 think: bool | str | None = None, hidethinking: bool = False) -> None:
        self.client = client
        self.model = model
        self.info = info
        self.format = fmt
        self.keep_alive = keep_alive
        self.verbose = verbose
        self.wordwrap = wordwrap
        self.think = think
        self.hidethinking = hidethinking
        self.system: str | None = None
        self.options: dict[str, Any] = {}
        self.messages: list[dict[str, Any]] = []
        self.history = True
        self.readline: Any = None
        self.history_file = load_config().home / "history"

    # -- line input -------------------------------------------------------------------------
    def _setup_readline(self) -> None:
        try:
            import readline
        except ImportError:  # no line editing on this platform; input() still works
            return
        self.readline = readline
        try:
            self.history_file.parent.mkdir(parents=True, exist_ok=True)
            if self.history_file.exists():
                readline.read_history_file(str(self.history_file))
        except OSError:
            pass
        readline.set_history_length(1000)

    def _save_history(self) -> None:
        if self.readline is None or not self.history:
            return
        with contextlib.suppress(OSError):
            self.readline.write_history_file(str(self.history_file))

    def _input(self, prompt: str) -> str:
        line = input(prompt)
        if self.readline is not None and not self.history and line:
            # readline adds every line; with /set nohistory take it back out.
            n = self.readline.get_current_history_length()
            if n:
                self.readline.remove_history_item(n - 1)
        return line

    def read_message(self) -> str | None:
        """One user input (a line, or a \"\"\" block); None at end of input (Ctrl-D)."""
        while True:
            try:
                line = self._input(PROMPT)
            except EOFError:
                click.echo()
                return None
            except KeyboardInterrupt:
                partial = self.readline.get_line_buffer() if self.readline is not None else ""
                click.echo()
                if not partial:
                    click.echo(EXIT_HINT)
                continue
            if not line.lstrip().startswith('"""'):
                return line
            return self._read_multiline(line.lstrip()[3:])

    def _read_multiline(self, first: str) -> str | None:
        if first.rstrip().endswith('"""'):
            return first.rstrip()[:-3]
        lines = [first] if first else []
        while True:
            try:
                line = self._input(CONTINUATION)
            except EOFError:
                click.echo()
                return None
            except KeyboardInterrupt:
                click.echo()
                return ""
            if line.rstrip().endswith('"""'):
                lines.append(line.rstrip()[:-3])
                return "\n".join(lines).strip("\n")
            lines.append(line)

    # -- the loop ---------------------------------------------------------------------------
    def loop(self) -> None:
        self._setup_readline()
        try:
            self._preload()
            while True:
                text = self.read_message()
                if text is None:
                    return
                if text.startswith("/"):
                    if self.command(text.strip()) == "bye":
                        return
                    continue
                if not text.strip():
                    continue
                self.send(text)
        finally:
            self._save_history()

    def _preload(self) -> None:
        body: dict[str, Any] = {"model": self.model, "messages": [], "stream": False}
        if self.keep_alive is not None:
            body["keep_alive"] = self.keep_alive
        self.client.json("POST", "/api/chat", body)

    def chat_body(self) -> dict[str, Any]:
        messages = list(self.messages)
        if self.system is not None:
            messages.insert(0, {"role": "system", "content": self.system})
        body: dict[str, Any] = {"model": self.model, "messages": messages, "stream": True}
        if self.options:
            body["options"] = dict(self.options)
        if self.format:
            body["format"] = self.format
        if self.keep_alive is not None:
            body["keep_alive"] = self.keep_alive
        if self.think is not None:
            body["think"] = self.think
        return body

    def send(self, text: str) -> None:
        message: dict[str, Any] = {"role": "user", "content": text}
        if {"vision", "audio"} & set(self.info.get("capabilities") or []):
            from ollamalike.cli.images import extract_images

            try:
                message["content"], images = extract_images(text)
            except (OllamalikeError, OSError) as e:
                click.echo(f"Error: {e}", err=True)
                return
            if images:
                message["images"] = images
        self.messages.append(message)
        printer = Printer(sys.stdout, wordwrap=self.wordwrap, show_thinking=not self.hidethinking)
        try:
            content, final = stream_chat(self.client, self.chat_body(), printer)
        except KeyboardInterrupt:
            # The stream is closed: the daemon cancels the sequence. Forget the unanswered turn.
            self.messages.pop()
            click.echo()
            return
        except OllamalikeError as e:
            self.messages.pop()
            click.echo(f"Error: {e.message}", err=True)
            return
        self.messages.append({"role": "assistant", "content": content})
        click.echo()
        if self.verbose and final:
            click.echo(format_stats(final), err=True)
            click.echo(err=True)

    # -- slash commands -----------------------------------------------------------------------
    def command(self, line: str) -> str | None:
        parts = line.split(maxsplit=1)
        cmd, rest = parts[0].lower(), (parts[1] if len(parts) > 1 else "")
        try:
            if cmd in ("/bye", "/exit"):
                return "bye"
            if cmd in ("/?", "/help"):
                self.help(rest.strip())
            elif cmd == "/set":
                self.set(rest)
            elif cmd == "/show":
                self.show(rest.strip())
            elif cmd == "/clear":
                self.messages = []
                click.echo("Cleared session context")
            elif cmd == "/load":
                self.load(rest.strip())
            elif cmd == "/save":
                self.save(rest.strip())
            else:
                click.echo(f"Unknown command '{parts[0]}'. Type /? for help")
        except OllamalikeError as e:
            click.echo(f"Error: {e.message}")
        return None

    def help(self, topic: str) -> None:
        text = {"set": HELP_SET, "/set": HELP_SET, "show": HELP_SHOW, "/show": HELP_SHOW,
                "shortcut": HELP_SHORTCUTS, "shortcuts": HELP_SHORTCUTS}.get(topic.lower(), HELP)
        click.echo(text)

    def set(self, rest: str) -> None:
        args = rest.split(maxsplit=1)
        if not args:
            click.echo(HELP_SET)
            return
        what, value = args[0].lower(), (args[1] if len(args) > 1 else "")
        switches = {
            "history": ("history", True), "nohistory": ("history", False),
            "wordwrap": ("wordwrap", True), "nowordwrap": ("wordwrap", False),
            "verbose": ("verbose", True), "quiet": ("verbose", False),
            "think": ("think", True), "nothink": ("think", False),
        }
        if what == "think" and value:
            try:
                self.think = parse_think_flag(value.strip().lower())
            except click.BadParameter:
                click.echo(f"Invalid think level {value!r}: use true, false, high, medium, low or max")
                return
            click.echo(f"Set 'think' mode to {value.strip().lower()!r}.")
        elif what in switches:
            attr, on = switches[what]
            setattr(self, attr, on)
            click.echo(f"Set '{what}' mode.")
        elif what == "format":
            if value.strip() != "json":
                click.echo("Invalid or missing format. For 'json' mode use '/set format json'")
                return
            self.format = "json"
            click.echo("Set format to 'json' mode.")
        elif what == "noformat":
            self.format = None
            click.echo("Disabled format.")
        elif what == "system":
            text = value
            if text.lstrip().startswith('"""'):
                text = self._read_multiline(text.lstrip()[3:]) or ""
            self.system = text.strip().strip('"') if text.strip() else None
            click.echo("Set system message." if self.system else "Cleared system message.")
        elif what == "parameter":
            self.set_parameter(value)
        else:
            click.echo(f"Unknown command '/set {args[0]}'. Type /? for help")

    def set_parameter(self, value: str) -> None:
        from ollamalike.options import PARAMETERS, parse_parameter

        fields = value.split()
        if len(fields) < 2:
            click.echo(HELP_PARAMETERS)
            return
        name, values = fields[0], fields[1:]
        spec = PARAMETERS.get(name)
        if spec is None:
            click.echo(f"Couldn't set parameter: unknown parameter '{name}'")
            return
        try:
            if spec.is_list:
                parsed: Any = [parse_parameter(name, v) for v in values]
            else:
                parsed = parse_parameter(name, " ".join(values))
        except OllamalikeError as e:
            click.echo(f"Couldn't set parameter: {e.message}")
            return
        self.options[name] = parsed
        shown = ", ".join(values) if spec.is_list else " ".join(values)
        click.echo(f"Set parameter '{name}' to '{shown}'")

    def show(self, what: str) -> None:
        info = self.info
        what = what.lower()
        if what == "info":
            from ollamalike.cli.views import render_show

            click.echo(render_show(info, verbose=False))
        elif what == "license":
            click.echo(info.get("license") or "No license was specified for this model.")
        elif what == "modelfile":
            click.echo(info.get("modelfile") or "")
        elif what == "parameters":
            if self.options:
                click.echo("User defined parameters:")
                for name, value in self.options.items():
                    shown = " ".join(map(str, value)) if isinstance(value, list) else value
                    click.echo(f"{name:<20} {shown}")
                click.echo()
            params = info.get("parameters") or ""
            if params:
                click.echo("Model defined parameters:")
                click.echo(params)
            elif not self.options:
                click.echo("No parameters were specified for this model.")
        elif what == "system":
            system = self.system if self.system is not None else info.get("system")
            click.echo(system or "No system message was specified for this model.")
        elif what == "template":
            click.echo(info.get("template") or "No prompt template was specified for this model.")
        else:
            click.echo(HELP_SHOW)

    def load(self, model: str) -> None:
        if not model:
            click.echo("Usage:\n  /load <modelname>")
            return
        click.echo(f"Loading model '{model}'")
        info = show_or_pull(self.client, model)
        self.model, self.info = model, info
        self.messages = []
        self.options = {}
        self.system = None
        self._preload()

    def save(self, name: str) -> None:
        """Create NAME from this session: base model + session parameters + system + messages."""
        if not name:
            click.echo("Usage:\n  /save <modelname>")
            return
        body: dict[str, Any] = {"model": name, "from": self.model, "stream": True}
        if self.options:
            body["parameters"] = dict(self.options)
        if self.system is not None:
            body["system"] = self.system
        if self.messages:
            body["messages"] = [dict(m) for m in self.messages]
        for _status in self.client.stream("POST", "/api/create", body):
            pass
        click.echo(f"Created new model '{name}'")
