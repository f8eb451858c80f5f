"""CLI commands other than ``serve`` must start fast: neither aiohttp nor llama_cpp gets imported."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from ollamalike.cli import COMMANDS

HEAVY = ("aiohttp", "llama_cpp")

PROBE = r"""
import importlib, json, sys
from ollamalike.cli import cli, COMMANDS
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
