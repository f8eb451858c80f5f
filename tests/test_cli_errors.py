"""CLI usage errors are one line on stderr with a non-zero exit; plain `ollamalike` prints the help."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ollamalike import __version__


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ollamalike", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("args", "message"), [
    (["nosuch"], "No such command 'nosuch'"),
    (["create"], "Missing argument 'NAME'"),
    (["rm"], "Missing argument 'NAMES...'"),
    (["list", "--bogus"], "No such option '--bogus'"),
    (["run", "--keepalive"], "requires an argument"),
])
def test_usage_errors_are_one_line(args: list[str], message: str) -> None:
    result = _cli(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ") and message in lines[0]
    assert "--help" in lines[0]
    assert result.stdout == ""


def test_no_arguments_prints_help() -> None:
    result = _cli()
    assert result.returncode == 0
    assert "Usage: ollamalike" in result.stdout and "create" in result.stdout


def test_version_and_help_exit_zero() -> None:
    assert _cli("--version").stdout.strip() == f"ollamalike version is {__version__}"
    result = _cli("create", "--help")
    assert result.returncode == 0 and "Modelfile" in result.stdout


def test_a_bad_setting_stops_serve_with_one_line() -> None:
    import os

    env = {**os.environ, "OLLAMALIKE_PROMPT_CACHE": "lots"}
    result = subprocess.run([sys.executable, "-m", "ollamalike", "serve"], capture_output=True, text=True,
                            timeout=60, env=env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "Error: OLLAMALIKE_PROMPT_CACHE must be a size in bytes (like 1073741824, 512MiB or 2GiB; 0 turns it off), "
        "got 'lots'"]
