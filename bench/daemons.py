"""The daemons a benchmark compares, each started and stopped by the benchmark (not a test).

``Berthd`` wraps tests.integration.daemon.Daemon (optionally from another source tree, for
before/after in one run); ``Dockerd`` is Debian's dockerd on its own socket, data root (on the
disk, under /var/tmp), exec root and pidfile, stopped by its PID. Both time a start until
``/_ping`` answers and until a request that needs the recovered state
(``GET /containers/json``) answers.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tests.integration.daemon as daemon_mod  # noqa: E402
from tests.integration.daemon import Daemon, _UnixHTTP  # noqa: E402

DOCKERD = "/usr/sbin/dockerd"


def request(sock: str, method: str, path: str, timeout: float = 30) -> tuple[int, bytes]:
    c = _UnixHTTP(sock, timeout)
    try:
        c.request(method, path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process itself has used: unlike wall time on a shared
    machine, this does not grow with the load of others."""
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def until_ready(sock: str, t0: float, timeout: float = 60) -> float:
    """Seconds from t0 until GET /containers/json answers 200 (after /_ping did)."""
    while time.monotonic() - t0 < timeout:
        try:
            if request(sock, "GET", "/containers/json")[0] == 200:
                return time.monotonic() - t0
        except OSError:
            time.sleep(0.002)
    raise RuntimeError(f"{sock}: no answer to GET /containers/json")


class Berthd(Daemon):
    """berthd on /var/tmp (a real disk); ``code`` runs another tree (a baseline)."""

    def __init__(self, code: Path | None = None):
        # at its default log level, as users run it (the integration Daemon runs at debug)
        super().__init__(base=Path(tempfile.mkdtemp(prefix="bb-", dir="/var/tmp")), code=code,
                         args=["--log-level", "info"])
        self.cpu = (0.0, 0.0)  # CPU seconds used by berthd itself at /_ping and when ready

    def timed_start(self) -> tuple[float, float]:
        """(seconds to /_ping, seconds to a recovered GET /containers/json)."""
        t0 = time.monotonic()
        here, daemon_mod.ROOT = daemon_mod.ROOT, self.code
        try:
            ping = self.start(timeout=60, poll=0.002)  # as often as Dockerd.timed_start asks
        finally:
            daemon_mod.ROOT = here
        assert self.proc is not None
        cpu_ping = cpu_s(self.proc.pid)
        ready = until_ready(str(self.sock), t0)
        self.cpu = (cpu_ping, cpu_s(self.proc.pid))
        return ping, ready

    def cleanup(self) -> None:
        super().cleanup()
        shutil.rmtree(self.base, ignore_errors=True)


class Dockerd:
    """Debian's dockerd on private roots (live restore on, no bridge); stopped by its PID."""

    def __init__(self) -> None:
        self.run = Path(tempfile.mkdtemp(prefix="bdk-", dir="/tmp"))
        self.data = Path(tempfile.mkdtemp(prefix="bdk-", dir="/var/tmp"))
        self.sock = str(self.run / "docker.sock")
        self.host = f"unix://{self.sock}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.cpu = (0.0, 0.0)  # CPU seconds used by the daemon process at /_ping and when ready

    def timed_start(self) -> tuple[float, float]:
        log = open(self.run / "dockerd.log", "ab")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [DOCKERD, "-H", self.host, "--data-root", str(self.data / "data"), "--exec-root", str(self.run / "exec"),
             "--pidfile", str(self.run / "pid"), "--bridge=none", "--iptables=false", "--live-restore"],
            stdout=log, stderr=log)
        while time.monotonic() - t0 < 60:
            if self.proc.poll() is not None:
                break
            try:
                if request(self.sock, "GET", "/_ping")[0] == 200:
                    ping = time.monotonic() - t0
                    cpu_ping = cpu_s(self.proc.pid)
                    ready = until_ready(self.sock, t0)
                    self.cpu = (cpu_ping, cpu_s(self.proc.pid))
                    return ping, ready
            except OSError:
                pass
            time.sleep(0.002)
        raise RuntimeError(f"dockerd did not start: {(self.run / 'dockerd.log').read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cleanup(self) -> None:
        self.stop()
        subprocess.run(["umount", "-R", str(self.data / "data")], capture_output=True)
        shutil.rmtree(self.data, ignore_errors=True)
        shutil.rmtree(self.run, ignore_errors=True)
