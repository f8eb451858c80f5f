"""``ollamalike run`` (one-shot), ``ps`` and ``stop`` as subprocesses against the real daemon,
and the interactive REPL through a pseudo-terminal (pexpect)."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from tests.daemon import Daemon
from tests.infer_helpers import start_serving_daemon

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory, tiny_chat_gguf: Path, tiny_embed_gguf: Path) -> Iterator[Daemon]:
    daemon = start_serving_daemon(tmp_path_factory.mktemp("cli-run"), tiny_chat_gguf, tiny_embed_gguf)
    # Short answers: the REPL and one-shot runs use the model's own parameters.
    from tests.infer_helpers import create_model

    create_model(daemon, "short", f"FROM {tiny_chat_gguf}\nPARAMETER num_predict 6\nPARAMETER seed 5\n"
                                  "PARAMETER temperature 0\n", daemon.home)
    yield daemon
    print(daemon.logs())
    daemon.stop()


def test_one_shot_prints_the_answer(d: Daemon) -> None:
    result = d.cli("run", "short", "Why", "is", "the", "sky", "blue?")
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("\n") and result.stdout.strip()
    api = d.request("POST", "/api/chat", {"model": "short", "stream": False,
                                          "messages": [{"role": "user", "content": "Why is the sky blue?"}]})[1]
    assert result.stdout.rstrip("\n") == api["message"]["content"].rstrip("\n")


def test_piped_stdin_is_joined_to_the_prompt(d: Daemon) -> None:
    result = d.cli("run", "short", "Summarize:", input="some piped text\n")
    assert result.returncode == 0, result.stderr
    api = d.request("POST", "/api/chat", {"model": "short", "stream": False, "messages": [
        {"role": "user", "content": "some piped text\n Summarize:"}]})[1]
    assert result.stdout.rstrip("\n") == api["message"]["content"].rstrip("\n")
    alone = d.cli("run", "short", input="only stdin")
    assert alone.returncode == 0 and alone.stdout.strip(), alone.stderr


def test_verbose_prints_timing_statistics(d: Daemon) -> None:
    result = d.cli("run", "short", "hello", "--verbose")
    assert result.returncode == 0, result.stderr
    for label in ("total duration:", "load duration:", "prompt eval count:", "prompt eval duration:",
                  "prompt eval rate:", "eval count:", "eval duration:", "eval rate:"):
        assert label in result.stderr, result.stderr
    assert re.search(r"eval count:\s+6 token\(s\)", result.stderr)
    assert re.search(r"eval rate:\s+[0-9.]+ tokens/s", result.stderr)


def test_format_json_and_keepalive(d: Daemon) -> None:
    result = d.cli("run", "tiny", "json please", "--format", "json", "--keepalive", "-1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.lstrip().startswith(("{", "["))
    ps = d.cli("ps")
    assert re.search(r"^tiny:latest\s.*Forever$", ps.stdout, re.M), ps.stdout
    bad = d.cli("run", "tiny", "x", "--keepalive", "whenever")
    assert bad.returncode != 0 and bad.stderr.startswith("Error: ") and len(bad.stderr.strip().splitlines()) == 1


def test_embedding_model_prints_the_vector(d: Daemon) -> None:
    result = d.cli("run", "emb", "hello world")
    assert result.returncode == 0, result.stderr
    vector = json.loads(result.stdout)
    assert isinstance(vector, list) and len(vector) > 8


def test_embedding_run_takes_truncate_and_dimensions(d: Daemon) -> None:
    """Ollama's ``run --truncate`` / ``--dimensions`` for embedding models."""
    short = d.cli("run", "emb", "hello world", "--dimensions", "4")
    assert short.returncode == 0, short.stderr
    vector = json.loads(short.stdout)
    assert len(vector) == 4 and abs(sum(v * v for v in vector) - 1.0) < 1e-4  # normalised again
    long_text = " ".join(f"word{i}" for i in range(3000))
    cut = d.cli("run", "emb", long_text, "--truncate")
    assert cut.returncode == 0 and len(json.loads(cut.stdout)) > 8, cut.stderr
    for refuse in ("--truncate=false", "--no-truncate"):
        refused = d.cli("run", "emb", long_text, refuse)
        assert refused.returncode == 1, refused.stdout
        assert refused.stderr.strip() == "Error: input length exceeds maximum context length", refused.stderr
    assert d.cli("run", "emb", "hello", "--truncate=true").returncode == 0
    for bad in (("--truncate=maybe",), ("--dimensions", "0"), ("--dimensions", "x")):
        wrong = d.cli("run", "emb", "hello", *bad)
        assert wrong.returncode == 2 and "Invalid value" in wrong.stderr and not wrong.stdout, (bad, wrong.stderr)
    too_wide = d.cli("run", "emb", "hello", "--dimensions", "100000")
    assert too_wide.returncode == 1 and "larger than the model's embedding size" in too_wide.stderr


def test_ps_and_stop(d: Daemon) -> None:
    d.request("POST", "/api/generate", {"model": "short", "keep_alive": "5m"})
    result = d.cli("ps")
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"]
    row = next(r for r in rows if r.startswith("short:latest"))
    assert "100% CPU" in row and re.search(r"(4|5) minutes from now$", row), row
    stopped = d.cli("stop", "short")
    assert stopped.returncode == 0, stopped.stderr
    assert "short:latest" not in d.cli("ps").stdout
    again = d.cli("stop", "short")
    assert again.returncode == 1 and again.stderr.strip() == 'Error: couldn\'t find model "short" to stop'


def test_unknown_model_is_one_error_line(d: Daemon) -> None:
    result = d.cli("run", "127.0.0.1:9/nosuch/model", "hi", timeout=60)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("Error: "), result.stderr
    bad = d.cli("run", "bad name!", "hi")
    assert bad.returncode != 0 and bad.stderr.startswith("Error: ")


# -- the interactive REPL, through a pseudo-terminal ------------------------------------------------
PROMPT = ">>> "


def spawn(d: Daemon, *args: str) -> pexpect.spawn:
    child = pexpect.spawn(sys.executable, ["-m", "ollamalike", "run", *args], env=d.env, encoding="utf-8",
                          timeout=60, dimensions=(40, 100))
    child.expect_exact(PROMPT)
    return child


def ask(child: pexpect.spawn, line: str) -> str:
    child.sendline(line)
    child.expect_exact(PROMPT)
    return str(child.before)


def test_repl_session(d: Daemon) -> None:
    child = spawn(d, "short")
    try:
        out = ask(child, "Hello there")
        answer = out.split("Hello there", 1)[1].strip()
        assert answer, out
        assert "Set parameter 'temperature' to '0.5'" in ask(child, "/set parameter temperature 0.5")
        assert "Couldn't set parameter" in ask(child, "/set parameter temperature hot")
        assert "Couldn't set parameter" in ask(child, "/set parameter nosuch 1")
        params = ask(child, "/show parameters")
        assert "User defined parameters:" in params and "temperature" in params and "num_predict" in params
        assert "Set system message." in ask(child, "/set system You are a pirate.")
        assert "You are a pirate." in ask(child, "/show system")
        assert "Set format to 'json' mode." in ask(child, "/set format json")
        assert "Disabled format." in ask(child, "/set noformat")
        assert "Set 'nowordwrap' mode." in ask(child, "/set nowordwrap")
        assert "FROM " in ask(child, "/show modelfile")
        assert ask(child, "/show template").strip() != "/show template"
        info = ask(child, "/show info")
        assert "Model" in info and "llama" in info
        assert "/set" in ask(child, "/?") and "Ctrl + d" in ask(child, "/? shortcuts")
        assert "Unknown command '/frobnicate'" in ask(child, "/frobnicate")
        # A multi-line message.
        child.sendline('"""first line')
        child.expect_exact("... ")
        child.sendline('second line"""')
        child.expect_exact(PROMPT)
        # Save the session as a new model: base + parameters + system + messages.
        assert "Created new model 'pirate'" in ask(child, "/save pirate")
        shown = d.request("POST", "/api/show", {"model": "pirate"})[1]
        assert shown["system"] == "You are a pirate."
        assert "temperature" in shown["parameters"]
        assert [m["content"] for m in shown["messages"] if m["role"] == "user"] == [
            "Hello there", "first line\nsecond line"]
        assert "Cleared session context" in ask(child, "/clear")
        assert "Loading model 'tiny'" in ask(child, "/load tiny")
        child.sendline("/bye")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0


def test_repl_ctrl_c_and_ctrl_d(d: Daemon) -> None:
    child = spawn(d, "tiny")
    try:
        child.sendintr()  # at an empty prompt: a hint, not an exit
        child.expect_exact("Use Ctrl + d or /bye to exit.")
        child.expect_exact(PROMPT)
        # A long answer, interrupted: the stream closes, the prompt comes back at once.
        ask(child, "/set parameter num_predict 100000")
        child.sendline("tell me everything")
        child.expect(r"\S")  # output has started
        child.sendintr()
        child.expect_exact(PROMPT, timeout=30)
        # The daemon freed the slot: the next answer works.
        ask(child, "/set parameter num_predict 4")
        assert ask(child, "again").split("again", 1)[1].strip()
        child.sendeof()
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    history = (d.home / "history").read_text()
    assert "tell me everything" in history


@pytest.mark.registry
def test_run_pulls_a_missing_model_first(d: Daemon, tmp_path: Path) -> None:
    from tests.registry_server import DockerRegistry, registry_available

    if not registry_available():
        pytest.skip("docker-registry is not installed (install.sh --dev installs it)")
    registry = DockerRegistry(tmp_path / "registry")
    registry.start()
    try:
        remote = f"{registry.host}/test/short:latest"
        for args in (("cp", "short", remote), ("push", remote, "--insecure"), ("rm", remote)):
            result = d.cli(*args)
            assert result.returncode == 0, (args, result.stderr)
        result = d.cli("run", remote, "hello", "--insecure")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip()
        assert "pulling" in result.stderr and "success" in result.stderr
        listed = d.request("GET", "/api/tags")[1]
        assert any(m["name"] == remote for m in listed["models"]), listed
    finally:
        registry.stop()


def test_one_shot_on_a_terminal_wraps_words(d: Daemon) -> None:
    create = d.request("POST", "/api/create", {"model": "wordy", "from": "tiny", "stream": False,
                                               "parameters": {"num_predict": 60, "seed": 2, "temperature": 0}})
    assert create[0] == 200, create
    outputs = {}
    for flag in ((), ("--nowordwrap",)):
        child = pexpect.spawn(sys.executable, ["-m", "ollamalike", "run", "wordy", "hello", *flag], env=d.env,
                              encoding="utf-8", timeout=60, dimensions=(24, 40))
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0, child.before
        outputs[flag] = str(child.before).replace("\r\n", "\n")
    wrapped, raw = outputs[()], outputs[("--nowordwrap",)]
    assert all(len(line) <= 40 for line in wrapped.split("\n")), wrapped
    assert wrapped.split() == raw.split()  # same words, only line breaks differ
    assert max(len(line) for line in raw.split("\n")) > 40, raw  # wrapping was needed
