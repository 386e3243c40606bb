"""DOCKER_HOST=ssh://: the docker CLI runs `docker system dial-stdio` on the far side, which is
berth here. A local sshd (Debian's openssh-server) on a loopback port, a throwaway user and
group with a test key, a `docker` on that user's PATH that runs `berth`; all removed after."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from tests.integration.daemon import Daemon, ROOT, suite_args
from tests.integration.remote.conftest import free_port

pytestmark = pytest.mark.root
DOCKER = "/usr/local/bin/docker"
SSHD = "/usr/sbin/sshd"


def berth_cli(*args: str, host: str, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "BERTH_HOST": host, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "berth.cli.main", *args], input=stdin, env=env,
                          capture_output=True, timeout=30)


def test_dial_stdio_bridges_to_the_socket(berthd: Daemon) -> None:
    r = berth_cli("system", "dial-stdio", host=berthd.host,
                  stdin=b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\nGET /version HTTP/1.1\r\nHost: x\r\n\r\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(b"HTTP/1.1 200 OK") and r.stdout.count(b"HTTP/1.1 200 OK") == 2
    assert b'"ApiVersion"' in r.stdout


def test_dial_stdio_without_a_daemon(tmp_path: Path) -> None:
    r = berth_cli("system", "dial-stdio", host=f"unix://{tmp_path}/none.sock", stdin=b"")
    assert r.returncode == 1 and b"Cannot connect to the berth daemon" in r.stderr


@dataclass
class Remote:
    host: str          # the DOCKER_HOST value
    env: dict[str, str]  # the local docker CLI's environment (an `ssh` that uses the test key)


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def remote() -> Iterator[Remote]:
    if not os.path.exists(SSHD):
        pytest.fail("openssh-server is not installed (.ci/run installs it)")
    name = f"berthssh{secrets.token_hex(3)}"
    base = Path(tempfile.mkdtemp(prefix="berth-ssh-", dir="/tmp"))
    base.chmod(0o711)
    made_privsep = not os.path.isdir("/run/sshd")
    sshd = None
    d = Daemon(args=[*suite_args(), "--group", name])
    try:
        _run("groupadd", name)
        _run("useradd", "--home-dir", str(base / "home"), "--create-home", "--gid", name, "--shell", "/bin/sh",
             "--password", "*", name)  # "*": no password login, yet not a locked account
        bindir = base / "home" / "bin"
        bindir.mkdir()
        shim = bindir / "docker"   # the remote `docker` is berth, talking to this test's berthd
        shim.write_text(f"#!/bin/sh\nexport BERTH_HOST={d.host} PYTHONPATH={ROOT}\n"
                        f"exec {_python_for_anyone()} -m berth.cli.main \"$@\"\n")
        shim.chmod(0o755)
        d.start()
        d.base.chmod(0o711)  # the user reaches the socket through its group, not the directory's mode
        d.import_busybox()
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / "host_key"))
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / "id_test"))
        (base / "authorized_keys").write_text((base / "id_test.pub").read_text())
        port = free_port()
        (base / "sshd_config").write_text(
            f"Port {port}\nListenAddress 127.0.0.1\nHostKey {base / 'host_key'}\nPidFile {base / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {base / 'authorized_keys'}\nStrictModes no\nUsePAM no\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
            f"AllowUsers {name}\nSetEnv PATH={bindir}:/usr/bin:/bin\nLogLevel VERBOSE\n")
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        sshd = subprocess.Popen([SSHD, "-D", "-e", "-f", str(base / "sshd_config")],
                                stdout=subprocess.DEVNULL, stderr=open(base / "sshd.log", "wb"))
        (base / "ssh_config").write_text(
            f"Host *\n  IdentityFile {base / 'id_test'}\n  IdentitiesOnly yes\n  StrictHostKeyChecking no\n"
            "  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n  BatchMode yes\n")
        client_bin = base / "client-bin"
        client_bin.mkdir()
        (client_bin / "ssh").write_text(f"#!/bin/sh\nexec /usr/bin/ssh -F {base / 'ssh_config'} \"$@\"\n")
        (client_bin / "ssh").chmod(0o755)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "BERTH_"))}
        env["PATH"] = f"{client_bin}:{env.get('PATH', '/usr/bin:/bin')}"
        _wait_for_port(port, sshd, base)
        yield Remote(f"ssh://{name}@127.0.0.1:{port}", env)
    finally:
        if sshd is not None:
            sshd.terminate()
            sshd.wait(10)
        d.cleanup()
        subprocess.run(["userdel", "--remove", name], capture_output=True)
        subprocess.run(["groupdel", name], capture_output=True)
        if made_privsep:
            shutil.rmtree("/run/sshd", ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)


def _python_for_anyone() -> str:
    """An interpreter the throwaway user may run (the venv's may live under /root); the CLI's
    dial-stdio needs only the standard library."""
    system = "/usr/bin/python3"
    if os.path.exists(system):
        out = subprocess.run([system, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True,
                             text=True).stdout.split()
        if tuple(int(x) for x in out) >= (3, 11):  # pyproject's requires-python
            return system
    return sys.executable


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], base: Path) -> None:
    import socket
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited: {(base / 'sshd.log').read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("sshd did not listen")


def test_docker_cli_over_ssh(remote: Remote) -> None:
    env = {**remote.env, "DOCKER_HOST": remote.host}
    r = subprocess.run([DOCKER, "run", "--rm", "busybox", "echo", "over ssh"], env=env, capture_output=True,
                       text=True, timeout=120)
    assert (r.returncode, r.stdout) == (0, "over ssh\n"), r.stderr
    r = subprocess.run([DOCKER, "-H", remote.host, "version", "--format", "{{.Server.Os}}"], env=remote.env,
                       capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout) == (0, "linux\n"), r.stderr
