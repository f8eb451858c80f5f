"""daemon/service.sh and ``./install.sh --uninstall``: the systemd user unit and launchd agent it
writes, in a temporary HOME, with systemctl/launchctl absent from PATH (nothing is started)."""

from __future__ import annotations

import os
import plistlib
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TOOLS = ("bash", "sed", "mkdir", "mv", "rm", "dirname", "uname", "id", "cat", "env")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A copy of the install layout (daemon/, install.sh, a .venv/bin/ollamalike) to run from."""
    root = tmp_path / "checkout"
    shutil.copytree(REPO / "daemon", root / "daemon")
    shutil.copy2(REPO / "install.sh", root / "install.sh")
    binary = root / ".venv" / "bin" / "ollamalike"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\nexit 0\n")
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    return root


@pytest.fixture
def path_without_service_managers(tmp_path: Path) -> str:
    """A PATH with only the tools the scripts need: no systemctl, no launchctl."""
    bindir = tmp_path / "tools"
    bindir.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found, tool
        (bindir / tool).symlink_to(found)
    return str(bindir)


def run(root: Path, home: Path, path: str, *args: str, script: str = "daemon/service.sh",
        **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {"HOME": str(home), "PATH": path, "LANG": "C", **env}
    return subprocess.run([str(root / script), *args], env=full_env, capture_output=True, text=True, timeout=60)


def unit_lines(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))


def test_systemd_unit_install_and_uninstall(root: Path, tmp_path: Path, path_without_service_managers: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    binary = root / ".venv" / "bin" / "ollamalike"
    printed = run(root, home, path_without_service_managers, "print", SERVICE_OS="Linux")
    assert printed.returncode == 0, printed.stderr
    fields = unit_lines(printed.stdout)
    assert fields["ExecStart"] == f'"{binary}" serve'
    assert fields["Environment"] == f'"OLLAMALIKE_HOME={home}/.ollamalike"'
    assert fields["Restart"] == "on-failure" and fields["KillMode"] == "control-group"
    assert fields["WantedBy"] == "default.target"
    assert "@" not in printed.stdout.replace("@HOME", "")  # every placeholder filled in
    assert not (home / ".config").exists()  # print changes nothing

    # Without systemctl a real install stops before writing anything.
    failed = run(root, home, path_without_service_managers, "install", SERVICE_OS="Linux")
    assert failed.returncode == 1
    assert failed.stderr.strip() == f"service.sh: error: systemctl not found: start the daemon yourself with '{binary} serve'"
    unit = home / ".config" / "systemd" / "user" / "ollamalike.service"
    assert not unit.exists()

    installed = run(root, home, path_without_service_managers, "install", SERVICE_OS="Linux", SERVICE_DRY_RUN="1")
    assert installed.returncode == 0, installed.stderr
    assert unit.read_text() == printed.stdout
    assert (home / ".ollamalike" / "logs").is_dir()
    assert "(dry run) systemctl --user daemon-reload" in installed.stdout
    assert "(dry run) systemctl --user enable --now ollamalike.service" in installed.stdout
    assert not list(unit.parent.glob("*.tmp"))

    # XDG_CONFIG_HOME is honoured.
    xdg = tmp_path / "xdg"
    again = run(root, home, path_without_service_managers, "install", SERVICE_OS="Linux", SERVICE_DRY_RUN="1",
                XDG_CONFIG_HOME=str(xdg))
    assert again.returncode == 0 and (xdg / "systemd" / "user" / "ollamalike.service").is_file()

    removed = run(root, home, path_without_service_managers, "uninstall", SERVICE_OS="Linux", SERVICE_DRY_RUN="1")
    assert removed.returncode == 0, removed.stderr
    assert "(dry run) systemctl --user disable --now ollamalike.service" in removed.stdout
    assert not unit.exists()
    second = run(root, home, path_without_service_managers, "uninstall", SERVICE_OS="Linux", SERVICE_DRY_RUN="1")
    assert second.returncode == 0 and "no service installed" in second.stdout


def test_install_sh_uninstall_delegates(root: Path, tmp_path: Path, path_without_service_managers: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    assert run(root, home, path_without_service_managers, "install", SERVICE_OS="Linux",
               SERVICE_DRY_RUN="1").returncode == 0
    unit = home / ".config" / "systemd" / "user" / "ollamalike.service"
    assert unit.exists()
    result = run(root, home, path_without_service_managers, "--uninstall", script="install.sh", SERVICE_OS="Linux",
                 SERVICE_DRY_RUN="1")
    assert result.returncode == 0, result.stderr
    assert f"removed {unit}" in result.stdout and not unit.exists()
    bad = run(root, home, path_without_service_managers, "--bogus", script="install.sh")
    assert bad.returncode == 1 and "unknown option --bogus" in bad.stderr


def test_launchd_agent(root: Path, tmp_path: Path, path_without_service_managers: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    result = run(root, home, path_without_service_managers, "install", SERVICE_OS="Darwin", SERVICE_DRY_RUN="1")
    assert result.returncode == 0, result.stderr
    agent = home / "Library" / "LaunchAgents" / "com.ollamalike.serve.plist"
    with agent.open("rb") as f:
        plist = plistlib.load(f)
    assert plist["Label"] == "com.ollamalike.serve"
    assert plist["ProgramArguments"] == [str(root / ".venv" / "bin" / "ollamalike"), "serve"]
    assert plist["EnvironmentVariables"] == {"OLLAMALIKE_HOME": f"{home}/.ollamalike"}
    assert plist["RunAtLoad"] is True and plist["KeepAlive"] == {"SuccessfulExit": False}
    assert plist["StandardErrorPath"] == f"{home}/.ollamalike/logs/service.log"
    assert "(dry run) launchctl bootstrap" in result.stdout
    removed = run(root, home, path_without_service_managers, "uninstall", SERVICE_OS="Darwin", SERVICE_DRY_RUN="1")
    assert removed.returncode == 0 and not agent.exists()


@pytest.mark.parametrize("name", ['we ird & dir', 'per%cent "quoted" \\back|pipe', "a<b>c"])
def test_odd_home_paths_are_escaped(root: Path, tmp_path: Path, path_without_service_managers: str,
                                    name: str) -> None:
    home = tmp_path / name
    home.mkdir()
    printed = run(root, home, path_without_service_managers, "print", SERVICE_OS="Darwin")
    assert printed.returncode == 0, printed.stderr
    plist = plistlib.loads(printed.stdout.encode())
    assert plist["EnvironmentVariables"]["OLLAMALIKE_HOME"] == f"{home}/.ollamalike"
    printed = run(root, home, path_without_service_managers, "print", SERVICE_OS="Linux")
    env_line = unit_lines(printed.stdout)["Environment"]
    # systemd's quoting: \\ and \" inside the quotes, % doubled (it starts a specifier).
    expected = f"OLLAMALIKE_HOME={home}/.ollamalike".replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    assert env_line == f'"{expected}"'


def test_bad_action_and_missing_binary(root: Path, tmp_path: Path, path_without_service_managers: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    for os_name in ("Linux", "Darwin"):
        bad = run(root, home, path_without_service_managers, "start", SERVICE_OS=os_name)
        assert bad.returncode == 1 and "usage: daemon/service.sh install|uninstall|print" in bad.stderr
    other = run(root, home, path_without_service_managers, "install", SERVICE_OS="Plan9")
    assert other.returncode == 1 and "unsupported system Plan9" in other.stderr
    os.remove(root / ".venv" / "bin" / "ollamalike")
    missing = run(root, home, path_without_service_managers, "install", SERVICE_OS="Linux", SERVICE_DRY_RUN="1")
    assert missing.returncode == 1 and "run ./install.sh first" in missing.stderr
    assert not (home / ".config").exists()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_unit_file_parses_with_systemd(root: Path, tmp_path: Path, path_without_service_managers: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    printed = run(root, home, path_without_service_managers, "print", SERVICE_OS="Linux")
    unit = tmp_path / "ollamalike.service"
    unit.write_text(printed.stdout)
    # Only systemd's own parser: it must not report unknown keys or bad syntax in our unit.
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True,
                            timeout=60)
    complaints = [line for line in result.stderr.splitlines() if str(unit) in line or "ollamalike.service" in line]
    assert result.returncode == 0 and not complaints, result.stderr
