"""The model-management CLI against the REAL daemon: create, list, show, cp, rm, errors, autostart, shutdown."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ollamalike.cli.output import human_bytes, human_duration, human_time, table
from ollamalike.client import Client, ConnectionFailed, error_for
from ollamalike.errors import BadRequest, InternalError, NotFound, Overloaded
from tests.daemon import Daemon, daemon_env, free_port, pid_alive, runner_descendants
from tests.helpers import store_snapshot

MODELFILE = '''FROM ./weights/tiny-chat.gguf
TEMPLATE """{{ if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}<|im_start|>user
{{ .Prompt }}<|im_end|>
<|im_start|>assistant
"""
PARAMETER temperature 0.25
PARAMETER stop "<|im_end|>"
PARAMETER stop "<|im_start|>"
SYSTEM """You are terse.
Second line of the system prompt.
Third line of the system prompt."""
LICENSE """Tiny Test License
Permission is granted.
Third license line."""
'''


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0 B"), (999, "999 B"), (1000, "1 KB"), (1500, "1.5 KB"), (4_700_000_000, "4.7 GB"),
     (13_000_000_000, "13 GB"), (123_456_789, "123 MB"), (2_000_000_000_000, "2 TB")],
)
def test_human_bytes(size: int, text: str) -> None:
    assert human_bytes(size) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.2, "Less than a second"), (1, "1 second"), (42, "42 seconds"), (70, "About a minute"),
     (150, "2 minutes"), (3600, "About an hour"), (5 * 3600, "5 hours"), (3 * 86400, "3 days"),
     (20 * 86400, "2 weeks"), (100 * 86400, "3 months"), (800 * 86400, "2 years")],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_human_time_parses_go_timestamps() -> None:
    from datetime import datetime, timezone

    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert human_time("2025-01-01T11:58:00.123456789Z", now) == "2 minutes ago"
    assert human_time("2025-01-01T04:00:00.5-07:00", now) == "About an hour ago"
    assert human_time("2025-01-01T13:00:00Z", now) == "About an hour from now"
    assert human_time("", now) == "Never"
    assert human_time("garbage", now) == "Never"


def test_table_alignment() -> None:
    out = table(["NAME", "ID"], [["a:latest", "0123456789ab"], ["longer-name:v1", "ffffffffffff"]])
    assert out.splitlines() == [
        "NAME              ID",
        "a:latest          0123456789ab",
        "longer-name:v1    ffffffffffff",
    ]


def test_client_error_mapping() -> None:
    assert isinstance(error_for(404, b'{"error":"model \'x\' not found"}'), NotFound)
    assert str(error_for(404, b'{"error":"model \'x\' not found"}')) == "model 'x' not found"
    assert str(error_for(400, b'{"error":{"message":"bad thing","type":"x"}}')) == "bad thing"
    assert isinstance(error_for(400, b"{}"), BadRequest)
    assert isinstance(error_for(503, b"busy"), Overloaded) and str(error_for(503, b"busy")) == "busy"
    assert isinstance(error_for(500, b""), InternalError)
    assert str(error_for(500, b"")) == "server answered HTTP 500"
    with pytest.raises(BadRequest, match="invalid server address"):
        Client("ftp://host")


def test_client_connection_refused_is_clear() -> None:
    port = free_port()
    client = Client(f"http://127.0.0.1:{port}")
    assert client.is_running(timeout=1) is False
    with pytest.raises(ConnectionFailed, match=f"could not connect to ollamalike server at http://127.0.0.1:{port}"):
        client.json("GET", "/api/tags")
    with pytest.raises(ConnectionFailed):
        list(client.stream("POST", "/api/create", {}))


def _model_dir(tmp_path: Path, gguf: Path, modelfile: str = MODELFILE) -> Path:
    """A Modelfile directory with the weights in a subdirectory, referenced relatively."""
    root = tmp_path / "project"
    (root / "weights").mkdir(parents=True)
    shutil.copyfile(gguf, root / "weights" / "tiny-chat.gguf")
    (root / "Modelfile").write_text(modelfile)
    return root


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result.stdout


def _one_line_error(result: subprocess.CompletedProcess[str], contains: str) -> str:
    assert result.returncode == 1, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one error line, got: {result.stderr!r}"
    assert lines[0].startswith("Error: "), lines[0]
    assert contains.lower() in lines[0].lower(), f"{contains!r} not in {lines[0]!r}"
    return lines[0]


@pytest.mark.e2e
def test_create_list_show_cp_rm(daemon: Daemon, tiny_chat_gguf: Path, tmp_path: Path) -> None:
    project = _model_dir(tmp_path, tiny_chat_gguf)
    # -f with the Modelfile elsewhere than the cwd: FROM resolves against the Modelfile's directory.
    out = _ok(daemon.cli("create", "tiny", "-f", str(project / "Modelfile"), cwd=tmp_path))
    lines = out.splitlines()
    assert lines[0] == "gathering model components"
    assert re.search(r"^copying file sha256:[0-9a-f]{64} 100%$", out, re.M), out
    assert lines[-1] == "success"
    assert "writing manifest" in lines

    # default ./Modelfile, same content: every layer already exists
    out = _ok(daemon.cli("create", "tiny-again", cwd=project))
    assert "using existing layer sha256:" in out
    assert out.splitlines()[-1] == "success"

    # -q quantizes while creating
    out = _ok(daemon.cli("create", "tiny-q", "-q", "q4_0", cwd=project))
    assert "quantizing F32 model to Q4_0" in out
    assert re.search(r"^    quantization\s+Q4_0$", _ok(daemon.cli("show", "tiny-q")), re.M)
    _one_line_error(daemon.cli("create", "tiny-bad", "-q", "q9_9", cwd=project), "unsupported quantization type")
    _ok(daemon.cli("rm", "tiny-q"))

    # a model built FROM another model by name
    (tmp_path / "Derived").write_text("FROM tiny\nSYSTEM Be brief.\nPARAMETER num_ctx 512\n")
    _ok(daemon.cli("create", "derived:v1", "-f", str(tmp_path / "Derived")))

    out = _ok(daemon.cli("list"))
    header, *rows = out.splitlines()
    assert re.match(r"^NAME\s{4,}ID\s{4,}SIZE\s{4,}MODIFIED$", header), header
    names = {row.split()[0] for row in rows}
    assert names == {"tiny:latest", "tiny-again:latest", "derived:v1"}
    for row in rows:
        m = re.match(r"^(\S+)\s{4,}([0-9a-f]{12})\s{4,}(\d+(\.\d)? [KMG]?B)\s{4,}(.+ ago)$", row)
        assert m, row
        assert m.group(5) in ("Less than a second ago", "1 second ago") or m.group(5).endswith("seconds ago")
    assert _ok(daemon.cli("ls", "der")).splitlines()[1].startswith("derived:v1")
    # Ollama's OLLAMA_HOST picks the server too
    via_alias = daemon.cli("ls", env={"OLLAMALIKE_HOST": "", "OLLAMA_HOST": f"http://127.0.0.1:{daemon.port}"})
    assert [r.split()[:2] for r in _ok(via_alias).splitlines()] == [r.split()[:2] for r in out.splitlines()]

    out = _ok(daemon.cli("show", "tiny"))
    assert re.search(r"^  Model$", out, re.M)
    assert re.search(r"^    architecture\s+llama$", out, re.M), out
    assert re.search(r"^    parameters\s+\S+", out, re.M)
    assert re.search(r"^    context length\s+\d+$", out, re.M)
    assert re.search(r"^    embedding length\s+\d+$", out, re.M)
    assert re.search(r"^    quantization\s+\S+$", out, re.M)
    assert re.search(r"^  Parameters$", out, re.M)
    assert re.search(r"^    temperature\s+0\.25$", out, re.M), out
    assert re.search(r'^    stop\s+"<\|im_end\|>"$', out, re.M), out
    system = out.split("  System\n")[1].split("\n\n")[0].splitlines()
    assert [s.strip() for s in system] == ["You are terse.", "Second line of the system prompt.", "..."]
    license_part = out.split("  License\n")[1].split("\n\n")[0].splitlines()
    assert [s.strip() for s in license_part] == ["Tiny Test License", "Permission is granted.", "..."]

    out = _ok(daemon.cli("show", "tiny", "-v"))
    assert "Third line of the system prompt." in out
    assert re.search(r"^  Metadata$", out, re.M)
    assert re.search(r"^    general\.architecture\s+llama$", out, re.M), out
    # The vocabulary is read for -v only, and shown abbreviated.
    assert re.search(r"^    tokenizer\.ggml\.tokens\s+\[<unk>, <s>, </s>, .*, \.\.\.\]$", out, re.M), out

    modelfile = _ok(daemon.cli("show", "tiny", "--modelfile"))
    assert re.search(r"^FROM ", modelfile, re.M)
    assert "PARAMETER temperature 0.25" in modelfile
    params = _ok(daemon.cli("show", "tiny", "--parameters"))
    assert re.search(r"^temperature\s+0\.25$", params, re.M)
    assert _ok(daemon.cli("show", "tiny", "--system")).strip().startswith("You are terse.")
    assert _ok(daemon.cli("show", "tiny", "--license")).startswith("Tiny Test License")
    template = _ok(daemon.cli("show", "tiny", "--template"))
    assert template.startswith("{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>")
    assert _ok(daemon.cli("show", "derived:v1", "--system")).strip() == "Be brief."

    assert _ok(daemon.cli("cp", "tiny", "copy/tiny:x")).strip() == "copied 'tiny' to 'copy/tiny:x'"
    assert "copy/tiny:x" in _ok(daemon.cli("list"))

    out = _ok(daemon.cli("rm", "tiny", "copy/tiny:x", "derived:v1"))
    assert out.splitlines() == ["deleted 'tiny'", "deleted 'copy/tiny:x'", "deleted 'derived:v1'"]
    rows = _ok(daemon.cli("list")).splitlines()[1:]
    assert [r.split()[0] for r in rows] == ["tiny-again:latest"]


@pytest.mark.e2e
def test_cli_bad_inputs(daemon: Daemon, tiny_chat_gguf: Path, tmp_path: Path) -> None:
    project = _model_dir(tmp_path, tiny_chat_gguf)
    _ok(daemon.cli("create", "keep", cwd=project))
    before = store_snapshot(daemon.models_dir)

    def modelfile(text: str) -> str:
        path = project / f"Modelfile.{abs(hash(text))}"
        path.write_text(text)
        return str(path)

    (project / "notgguf.bin").write_bytes(b"this is not a GGUF file at all" * 10)
    cases = [
        (("create", "x", "-f", str(tmp_path / "missing")), "Modelfile"),
        (("create", "x"), "Modelfile"),  # cwd has no Modelfile
        (("create", "x", "-f", modelfile("FROM ./weights/tiny-chat.gguf\nBOGUS thing\n")), "line 2"),
        (("create", "x", "-f", modelfile("SYSTEM hello\n")), "FROM"),
        (("create", "x", "-f", modelfile("FROM ./nope.gguf\n")), "not found"),
        (("create", "x", "-f", modelfile("FROM ./notgguf.bin\n")), "GGUF"),
        (("create", "x", "-f", modelfile("FROM ./weights/tiny-chat.gguf\nADAPTER ./none.gguf\n")), "not found"),
        (("create", "x", "-f", modelfile("FROM 127.0.0.1:1/library/no-such-model\n")), ""),
        (("create", "x", "-f", modelfile("FROM ./weights/tiny-chat.gguf\nPARAMETER temperature hot\n")), "temperature"),
        (("create", "bad/na/me/x", "-f", modelfile("FROM keep\n")), "invalid model name"),
        (("create", "../evil", "-f", modelfile("FROM keep\n")), "invalid model name"),
        (("show", "ghost"), "model 'ghost' not found"),
        (("show", "keep", "--system", "--license"), "only one of"),
        (("cp", "ghost", "other"), "not found"),
        (("cp", "keep", "bad name!"), "invalid model name"),
        (("rm", "ghost"), "not found"),
    ]
    for args, contains in cases:
        cwd = tmp_path if args == ("create", "x") else project
        _one_line_error(daemon.cli(*args, cwd=cwd), contains)
    after = store_snapshot(daemon.models_dir)
    assert set(after[0]) - set(before[0]) == set(), "extra files"
    assert after == before

    # rm stops at the first unknown name, as Ollama does, after deleting the ones before it
    _ok(daemon.cli("cp", "keep", "keep2"))
    result = daemon.cli("rm", "keep2", "ghost", "keep")
    assert result.stdout.splitlines() == ["deleted 'keep2'"]
    _one_line_error(result, "ghost")
    assert [r.split()[0] for r in _ok(daemon.cli("list")).splitlines()[1:]] == ["keep:latest"]


def test_cli_reports_unreachable_remote_server(tmp_path: Path) -> None:
    # 127.0.0.2 is loopback (nothing leaves the machine) but not an address the CLI autostarts for
    port = free_port()
    env = daemon_env(tmp_path / "home", port, {"OLLAMALIKE_HOST": f"http://127.0.0.2:{port}"})
    result = subprocess.run(
        [sys.executable, "-m", "ollamalike", "list"], capture_output=True, text=True, env=env, timeout=60
    )
    _one_line_error(result, f"could not connect to ollamalike server at http://127.0.0.2:{port}")
    assert not (tmp_path / "home" / "logs" / "server.log").exists()


def _serve_pids(home: Path) -> list[int]:
    """``ollamalike serve`` processes whose environment names this home (the autostarted daemon)."""
    marker = f"OLLAMALIKE_HOME={home}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"serve" in cmdline and b"ollamalike" in cmdline and marker in environ:
            pids.append(int(entry.name))
    return pids


@pytest.mark.e2e
def test_cli_autostarts_the_daemon(tmp_path: Path) -> None:
    home = tmp_path / "autohome"
    port = free_port()
    env = daemon_env(home, port)
    pids: list[int] = []
    try:
        result = subprocess.run(
            [sys.executable, "-m", "ollamalike", "list"], capture_output=True, text=True, env=env, timeout=90
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == ["NAME    ID    SIZE    MODIFIED"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
            assert resp.read() == b"Ollama is running"
        assert "listening on 127.0.0.1" in (home / "logs" / "server.log").read_text()
        pids = _serve_pids(home)
        assert len(pids) == 1, pids
        # a second command reuses the running daemon
        result = subprocess.run(
            [sys.executable, "-m", "ollamalike", "ls"], capture_output=True, text=True, env=env, timeout=60
        )
        assert result.returncode == 0, result.stderr
        assert _serve_pids(home) == pids
    finally:
        for pid in pids or _serve_pids(home):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert not any(pid_alive(p) for p in pids)


def _load_a_runner(daemon: Daemon, tiny_chat_gguf: Path, tmp_path: Path) -> None:
    project = _model_dir(tmp_path, tiny_chat_gguf, "FROM ./weights/tiny-chat.gguf\n")
    _ok(daemon.cli("create", "tiny", cwd=project))
    status, body = daemon.request(
        "POST", "/api/generate", {"model": "tiny", "prompt": "hi", "stream": False, "options": {"num_predict": 2}}
    )
    assert status == 200, body
    daemon.note_children()
    assert runner_descendants(daemon.proc.pid), "a runner process should be running"


@pytest.mark.e2e
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_graceful_shutdown_stops_runners(
    daemon: Daemon, tiny_chat_gguf: Path, tmp_path: Path, sig: signal.Signals
) -> None:
    status, _ = daemon.request("POST", "/api/generate", {})
    if status == 404:
        pytest.skip("inference routes are not part of this build yet")
    _load_a_runner(daemon, tiny_chat_gguf, tmp_path)
    assert daemon.stop(sig) == 0
    assert "ollamalike stopped" in daemon.logs()




@pytest.mark.e2e
def test_serve_on_a_busy_port_is_one_clear_error(daemon: Daemon) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ollamalike", "serve"], capture_output=True, text=True, env=daemon.env, timeout=60
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == f"Error: listen tcp 127.0.0.1:{daemon.port}: bind: address already in use"
    assert "listening on" not in result.stderr


@pytest.mark.e2e
def test_rm_unloads_a_running_model(daemon: Daemon, tiny_chat_gguf: Path, tmp_path: Path) -> None:
    status, _ = daemon.request("POST", "/api/generate", {})
    if status == 404:
        pytest.skip("inference routes are not part of this build yet")
    _load_a_runner(daemon, tiny_chat_gguf, tmp_path)
    runners = set(runner_descendants(daemon.proc.pid))
    status, ps = daemon.request("GET", "/api/ps")
    assert [m["name"] for m in ps["models"]] == ["tiny:latest"]
    assert _ok(daemon.cli("rm", "tiny")).strip() == "deleted 'tiny'"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (daemon.request("GET", "/api/ps")[1]["models"] or any(map(pid_alive, runners))):
        time.sleep(0.05)
    assert daemon.request("GET", "/api/ps")[1]["models"] == []
    assert not any(pid_alive(p) for p in runners)


@pytest.mark.e2e
def test_autostart_failure_points_at_the_log(tmp_path: Path) -> None:
    home = tmp_path / "home"
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the models directory should be")
    env = daemon_env(home, free_port(), {"OLLAMALIKE_MODELS": str(blocker)})
    result = subprocess.run(
        [sys.executable, "-m", "ollamalike", "list"], capture_output=True, text=True, env=env, timeout=90
    )
    log_path = home / "logs" / "server.log"
    _one_line_error(result, f"see {log_path}")
    assert "exited with status 1" in result.stderr
    assert f"Error: cannot use models directory {blocker}" in log_path.read_text()
