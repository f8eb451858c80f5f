"""CLI commands other than ``serve`` must start fast: neither aiohttp nor llama_cpp gets imported, and the
fast path of ``list``/``ps``/``show`` (cli/fast.py) not even click or http.client. Timing is bench/cli.py's."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ollamalike.cli.app import COMMANDS
from tests.daemon import Daemon

HEAVY = ("aiohttp", "llama_cpp")

PROBE = r"""
import importlib, json, sys
from ollamalike.cli.app import cli, COMMANDS
module_name = COMMANDS[sys.argv[1]].partition(":")[0]
importlib.import_module(module_name)
try:
    cli.main(args=[sys.argv[1], "--help"], prog_name="ollamalike", standalone_mode=False)
except SystemExit as e:
    if e.code not in (0, None):
        raise
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("aiohttp", "llama_cpp"))
print(json.dumps(heavy))
"""


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


@pytest.mark.parametrize("command", sorted(c for c in COMMANDS if c != "serve"))
def test_command_help_imports_nothing_heavy(command: str) -> None:
    module_name = COMMANDS[command].partition(":")[0]
    if not _module_exists(module_name):
        pytest.skip(f"{module_name} is not part of this build yet")
    proc = subprocess.run([sys.executable, "-c", PROBE, command], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert "Usage:" in proc.stdout, proc.stdout
    heavy = json.loads(lines[-1])
    assert heavy == [], f"`ollamalike {command} --help` imported {heavy}"


def test_serve_is_the_command_that_imports_aiohttp() -> None:
    """The probe can fail: importing the server really does pull aiohttp in."""
    code = "import sys, ollamalike.server.app; print('aiohttp' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "True", proc.stderr


def test_top_level_help_lists_commands() -> None:
    proc = subprocess.run([sys.executable, "-m", "ollamalike", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for command in ("serve", "create", "list", "show", "cp", "rm"):
        assert command in proc.stdout


# --- the fast path of list/ps/show (issue 20): no click, no http.client, no dataclass Config ----------
# Modules the fast path (cli/fast.py) must not import; each costs milliseconds of start-up. Checked against
# what the interpreter had loaded before our code ran (site and .pth files may load some of them).
FAST_FORBIDDEN = ("aiohttp", "llama_cpp", "click", "http", "email", "ssl", "urllib", "subprocess", "hashlib",
                  "dataclasses", "inspect", "pathlib", "typing", "socket", "selectors", "datetime", "encodings.idna",
                  "json", "re", "enum", "functools",
                  "ollamalike.config", "ollamalike.names", "ollamalike.cli.app", "ollamalike.cli.models",
                  "ollamalike.cli.run")

MAIN_PROBE = r"""
import sys
before = set(sys.modules)
from ollamalike.cli import main
code = 0
try:
    main(sys.argv[2:])
except SystemExit as e:
    code = e.code
new = sorted(set(sys.modules) - before)
import json
with open(sys.argv[1], "w") as f:
    json.dump({"code": code, "new": new}, f)
"""

CLICK_PROBE = "import sys\nfrom ollamalike.cli.app import main\nmain(sys.argv[1:])\n"


def _when(text: str) -> str:
    """Relative times ("3 seconds ago") blanked: the two runs are seconds apart."""
    return re.sub(r"(Less than a second|About an? \w+|\d+ \w+) (ago|from now)", "<when>", text)


def _forbidden(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == f or m.startswith(f + ".") for f in FAST_FORBIDDEN)]


def _probe(daemon: Daemon, tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[str, str, int, list[str]]:
    """Run ``ollamalike.cli.main(args)`` against the daemon: (stdout, stderr, exit code, modules it imported)."""
    out = tmp_path / "probe.json"
    proc = subprocess.run([sys.executable, "-c", MAIN_PROBE, str(out), *args], capture_output=True, text=True,
                          env={**daemon.env, **(env or {})}, timeout=120)
    data = json.loads(out.read_text())
    return proc.stdout, proc.stderr, int(data["code"] or 0), list(data["new"])


def _click_path(daemon: Daemon, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", CLICK_PROBE, *args], capture_output=True, text=True,
                          env={**daemon.env, **(env or {})}, timeout=120)


@pytest.fixture
def tiny_daemon(daemon: Daemon, tiny_chat_gguf: Path, tmp_path: Path) -> Daemon:
    """The real daemon holding ``tiny`` (with a system prompt, a license and parameters), loaded in a runner."""
    (tmp_path / "Modelfile").write_text(
        f'FROM {tiny_chat_gguf}\nSYSTEM """Be terse.\nReally."""\nLICENSE """L1\nL2\nL3"""\nPARAMETER temperature 0.25\n')
    created = daemon.cli("create", "tiny", "-f", str(tmp_path / "Modelfile"))
    assert created.returncode == 0, created.stderr
    status, body = daemon.request("POST", "/api/generate", {"model": "tiny", "prompt": "hi", "stream": False,
                                                             "options": {"num_predict": 1}})
    assert status == 200, body
    return daemon


FAST_COMMANDS = [("list",), ("ls",), ("ls", "ti"), ("ls", "zz"), ("ps",), ("show", "tiny"), ("show", "-v", "tiny"),
                 ("show", "tiny", "--license"), ("show", "tiny", "--parameters", "--verbose"), ("show", "tiny", "--template")]


@pytest.mark.e2e
def test_fast_path_imports_nothing_heavy_and_prints_what_click_prints(tiny_daemon: Daemon, tmp_path: Path) -> None:
    for args in FAST_COMMANDS:
        stdout, stderr, code, modules = _probe(tiny_daemon, tmp_path, *args)
        assert code == 0, (args, stderr)
        assert _forbidden(modules) == [], f"`ollamalike {' '.join(args)}` imported {_forbidden(modules)}"
        slow = _click_path(tiny_daemon, *args)
        assert slow.returncode == 0, slow.stderr
        assert _when(stdout) == _when(slow.stdout), args
    # The console script's entry point: the same answers, its output flushed before the quick exit.
    for args in [("list",), ("show", "tiny", "--license"), ("show", "missing")]:
        script = subprocess.run([sys.executable, "-c", "from ollamalike.cli import console; console()", *args],
                                capture_output=True, text=True, env=tiny_daemon.env, timeout=120)
        stdout, stderr, code, _ = _probe(tiny_daemon, tmp_path, *args)
        assert (_when(script.stdout), script.stderr, script.returncode) == (_when(stdout), stderr, code), args
    listing = _probe(tiny_daemon, tmp_path, "list")[0].splitlines()
    assert listing[0].split() == ["NAME", "ID", "SIZE", "MODIFIED"] and listing[1].startswith("tiny:latest ")
    assert "100% CPU" in _probe(tiny_daemon, tmp_path, "ps")[0]
    assert _probe(tiny_daemon, tmp_path, "show", "tiny", "--license")[0] == "L1\nL2\nL3\n"


@pytest.mark.e2e
def test_what_the_fast_path_declines_goes_to_click(tiny_daemon: Daemon, tmp_path: Path) -> None:
    """The probe can fail: help, errors and unknown options do import click, and say what click says."""
    stdout, _, code, modules = _probe(tiny_daemon, tmp_path, "show", "--help")
    assert code == 0 and "Usage:" in stdout and "click" in modules
    for args in [("show", "missing"), ("show", "tiny", "--license", "--system"), ("show", "tiny", "--bogus"),
                 ("ls", "a", "b"), ("ps", "extra")]:
        stdout, stderr, code, modules = _probe(tiny_daemon, tmp_path, *args)
        slow = _click_path(tiny_daemon, *args)
        assert (stdout, stderr, code) == (slow.stdout, slow.stderr, slow.returncode), args
        assert code != 0 and stderr.startswith("Error: ") and "click" in modules, args
    assert "model 'missing' not found" in _probe(tiny_daemon, tmp_path, "show", "missing")[1]


@pytest.mark.e2e
def test_fast_path_sends_the_key(daemon_factory: Any, tmp_path: Path) -> None:
    keyfile = tmp_path / "keys"
    keyfile.write_text("# the admin key\nadmin-secret\n")
    daemon = daemon_factory({"OLLAMALIKE_API_KEY": "user-key", "OLLAMALIKE_ADMIN_KEY": f"@{keyfile}"})
    stdout, _, code, modules = _probe(daemon, tmp_path, "list")
    assert code == 0 and stdout.split() == ["NAME", "ID", "SIZE", "MODIFIED"]
    assert _forbidden(modules) == []  # a 401 would have gone to the click path
    # Without a key the daemon refuses: the click path reports it, as before.
    stdout, stderr, code, modules = _probe(daemon, tmp_path, "list", env={"OLLAMALIKE_API_KEY": "", "OLLAMALIKE_ADMIN_KEY": ""})
    assert code == 1 and stderr.startswith("Error: ") and "click" in modules


def test_fast_path_declines_when_nothing_answers(tmp_path: Path) -> None:
    """Nothing listening on a non-local address (no autostart there): the click path's error is printed."""
    from tests.daemon import free_port

    port = free_port()
    env = {**os.environ, "OLLAMALIKE_HOST": f"127.0.0.2:{port}", "OLLAMALIKE_HOME": str(tmp_path)}
    out = tmp_path / "probe.json"
    proc = subprocess.run([sys.executable, "-c", MAIN_PROBE, str(out), "ps"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.stderr.startswith(f"Error: could not connect to ollamalike server at http://127.0.0.2:{port}"), proc.stderr
    assert json.loads(out.read_text())["code"] == 1
