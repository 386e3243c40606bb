"""-H fd://: sockets handed in the way systemd does it (fds from 3, LISTEN_PID = berthd's pid,
LISTEN_FDS, LISTEN_FDNAMES), readiness reported on NOTIFY_SOCKET, and the errors."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from tests.integration.daemon import ROOT, Daemon
from tests.integration.remote.certs import Certs
from tests.integration.remote.test_tls import tls_ping

pytestmark = pytest.mark.root
DOCKER = "/usr/local/bin/docker"
# systemd sets LISTEN_PID to the pid it execs; `exec` keeps the shell's pid for berthd
LAUNCHER = ["sh", "-c", 'LISTEN_PID=$$ exec "$@"', "sh"]


def hand_in(d: Daemon, socks: list[socket.socket], names: list[str]) -> None:
    """Make ``socks`` berthd's fds 3, 4, ... and set the environment as systemd would."""
    fds = [s.fileno() for s in socks]

    def child() -> None:
        moved = [os.dup(fd) for fd in fds]  # out of the way of 3.. first
        for i, fd in enumerate(moved):
            os.dup2(fd, 3 + i)
    d.launcher = LAUNCHER
    d.popen_kwargs = {"preexec_fn": child, "pass_fds": tuple(range(3, 3 + len(socks)))}
    d.extra_env.update(LISTEN_FDS=str(len(socks)), LISTEN_FDNAMES=":".join(names))


def unix_listener(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    os.chmod(path, 0o660)
    s.listen(64)
    return s


@pytest.fixture
def sockdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="berth-act-", dir="/tmp") as d:
        yield Path(d)


def test_unix_socket_from_systemd(sockdir: Path) -> None:
    path = sockdir / "activated.sock"
    listener = unix_listener(path)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(sockdir / "notify"))
    d = Daemon(args=["-H", "fd://"], env={"NOTIFY_SOCKET": str(sockdir / "notify")})
    hand_in(d, [listener], ["berth.socket"])
    d.start()
    try:
        listener.close()  # only berthd's copy listens now
        d.import_busybox()
        env = {**d.env, "DOCKER_HOST": f"unix://{path}"}
        r = subprocess.run([DOCKER, "run", "--rm", "busybox", "echo", "activated"], env=env, capture_output=True,
                           text=True, timeout=60)
        assert (r.returncode, r.stdout) == (0, "activated\n"), r.stderr
        notify.settimeout(10)
        msg = notify.recv(4096).decode()
        assert d.proc is not None and "READY=1" in msg and f"MAINPID={d.proc.pid}" in msg
        assert d.proc is not None
        # no child of berthd (the fork server, and so no shim) inherits the variables or the socket
        activated = os.readlink(f"/proc/{d.proc.pid}/fd/3")
        assert activated.startswith("socket:")
        children = Path(f"/proc/{d.proc.pid}/task/{d.proc.pid}/children").read_text().split()
        assert children, "berthd's fork server"
        for pid in children:
            assert b"LISTEN_FDS=" not in Path(f"/proc/{pid}/environ").read_bytes()
            assert activated not in {os.readlink(f"/proc/{pid}/fd/{n}") for n in os.listdir(f"/proc/{pid}/fd")}
    finally:
        d.cleanup()
        notify.close()
    assert path.exists(), "an activated socket belongs to systemd: berthd must not remove it"


def test_fd_number_selects_one_and_tls_applies_to_tcp(sockdir: Path, certs: Certs) -> None:
    unix = unix_listener(sockdir / "other.sock")
    tcp = socket.create_server(("127.0.0.1", 0))
    port = tcp.getsockname()[1]
    d = Daemon(args=["-H", "fd://4", "--tlsverify", f"--tlscacert={certs.ca / 'ca.pem'}",
                     f"--tlscert={certs.server / 'cert.pem'}", f"--tlskey={certs.server / 'key.pem'}"])
    hand_in(d, [unix, tcp], ["berth.socket", "berth-tls.socket"])
    d.start()
    try:
        unix.close()
        tcp.close()
        assert tls_ping(port, certs.client, certs.ca / "ca.pem").endswith(b"OK")
        with pytest.raises((ConnectionRefusedError, FileNotFoundError)):  # fd 3 was closed by berthd
            with socket.socket(socket.AF_UNIX) as c:
                c.connect(str(sockdir / "other.sock"))
    finally:
        d.cleanup()


def test_activated_plain_tcp_needs_explicit_tls_false(sockdir: Path) -> None:
    tcp = socket.create_server(("127.0.0.1", 0))
    with tcp:
        r = _berthd_with(tcp, "fd://")
    assert r.returncode != 0 and "without TLS" in r.stderr, r.stderr


def _berthd_with(sock: socket.socket | None, host: str, listen_pid: str | None = None) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="berth-", dir="/tmp") as base:
        env = {**os.environ, "LISTEN_FDS": "1" if sock else "0"}
        kw: dict = {}
        cmd = [sys.executable, "-m", "berth.daemon.main", "--data-root", f"{base}/data", "--exec-root",
               f"{base}/run", "-H", host]
        if sock is not None:
            fd = sock.fileno()
            kw = {"preexec_fn": lambda: os.dup2(fd, 3), "pass_fds": (3,)}
        if listen_pid is not None:
            env["LISTEN_PID"] = listen_pid
        else:
            cmd = [*LAUNCHER, *cmd]
        return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=30, **kw)


def test_no_sockets_passed_in() -> None:
    r = _berthd_with(None, "fd://")
    assert r.returncode != 0 and "no sockets found via socket activation" in r.stderr, r.stderr


def test_sockets_for_another_pid_are_not_taken(sockdir: Path) -> None:
    with unix_listener(sockdir / "s.sock") as s:
        r = _berthd_with(s, "fd://", listen_pid="1")
    assert r.returncode != 0 and "no sockets found via socket activation" in r.stderr, r.stderr


def test_fd_number_out_of_range(sockdir: Path) -> None:
    with unix_listener(sockdir / "s.sock") as s:
        r = _berthd_with(s, "fd://5")
    assert r.returncode != 0 and "too few socket activated files" in r.stderr, r.stderr
