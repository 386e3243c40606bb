"""berthd's first moments (berth.daemon.prelisten, berth.api.early): /_ping answers from a
thread before the event loop exists, so what clients and signals meet in that window must
behave as they do once the loop serves: the docker CLI's first requests are answered, a
SIGTERM ends in the orderly shutdown, and every listener listens before /_ping answers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.integration.daemon import ROOT, Daemon

pytestmark = pytest.mark.root
DOCKER = "/usr/local/bin/docker"


def _wait_for(path: str, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    end = time.monotonic() + timeout
    while not os.path.exists(path):
        assert proc.poll() is None and time.monotonic() < end, "berthd exited or never listened"
        time.sleep(0.0005)


def _launch(d: Daemon, *args: str) -> subprocess.Popen[bytes]:
    """berthd as Daemon.start runs it, without waiting for /_ping."""
    d.proc = subprocess.Popen(
        [sys.executable, "-m", "berth.daemon.main", "-H", d.host, "--data-root", str(d.data_root),
         "--exec-root", str(d.exec_root), "--log-level", "debug", "--pidfile", str(d.base / "pid"), *args],
        stdout=open(d.log, "ab"), stderr=subprocess.STDOUT, cwd=ROOT)
    return d.proc


def test_docker_cli_at_the_first_moment_is_answered() -> None:
    """The CLI's first requests as the socket appears: ``docker version`` (/_ping, /version:
    both static, the thread's or the loop's early routes) and ``docker ps`` (waits for the
    engine); on the connections the thread took, nothing is lost on the way to the loop."""
    d = Daemon()
    try:
        proc = _launch(d)
        _wait_for(str(d.sock), proc)
        cmds = ([DOCKER, "version", "--format", "{{.Server.APIVersion}} {{.Server.KernelVersion}}"],
                [DOCKER, "ps", "-q"])
        clients = [subprocess.Popen(c, env=d.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                   for c in cmds]
        (version, err1), (ps, err2) = (c.communicate(timeout=60) for c in clients)
        assert [c.returncode for c in clients] == [0, 0], err1 + err2
        assert version.split() == ["1.50", os.uname().release] and ps == ""
    finally:
        d.cleanup()


def test_sigterm_as_the_socket_appears_shuts_down_in_order() -> None:
    d = Daemon()
    try:
        proc = _launch(d)
        _wait_for(str(d.sock), proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, d.log.read_text()[-2000:]
        assert not d.sock.exists() and not (d.base / "pid").exists()
        assert "shutting down" in d.log.read_text()
    finally:
        d.cleanup()


def test_a_busy_tcp_address_stops_berthd_before_any_ping() -> None:
    """Every listener listens before /_ping answers: a TCP address in use ends the start with
    dockerd's kind of message, and the Unix socket never answered."""
    busy = socket.create_server(("127.0.0.1", 0))
    port = busy.getsockname()[1]
    d = Daemon()
    try:
        proc = _launch(d, "-H", f"tcp://127.0.0.1:{port}", "--tls=false")
        assert proc.wait(30) != 0
        log = d.log.read_text()
        assert f"failed to listen on tcp://127.0.0.1:{port}: Address already in use" in log, log[-2000:]
        assert "/_ping answered" not in log and "Traceback" not in log
    finally:
        busy.close()
        d.cleanup()
