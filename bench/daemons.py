"""The daemons a benchmark compares, each started and stopped by the benchmark (not a test).

``Berthd`` wraps tests.integration.daemon.Daemon (optionally from another source tree, for
before/after in one run); ``Dockerd`` is Debian's dockerd on its own socket, data root (on the
disk, under /var/tmp), exec root and pidfile, stopped by its PID. Both time a start until
``/_ping`` answers and until a request that needs the recovered state
(``GET /containers/json``) answers.

Also the measuring helpers every benchmark shares: a process's CPU seconds (``cpu_s``), a
``/proc`` status field in KiB (``kib``, ``rss``, ``pss``), a median (``med``), stopping a
process it started (``terminate``) and importing busybox into a daemon (``ensure_busybox``).
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tests.integration.daemon as daemon_mod  # noqa: E402
from tests.integration.daemon import Daemon, _UnixHTTP  # noqa: E402

DOCKERD = "/usr/sbin/dockerd"
DOCKER = "/usr/local/bin/docker"


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


def kib(path: str, key: str) -> int:
    """A ``key:  N kB`` field of a /proc file (status, smaps_rollup); 0 when it is gone."""
    try:
        for line in open(path):
            if line.startswith(key):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss(pid: int) -> int:
    return kib(f"/proc/{pid}/status", "VmRSS:")


def pss(pids: list[int]) -> int:
    return sum(kib(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids)


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def terminate(proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """SIGTERM a process this benchmark started, SIGKILL it after ``timeout`` seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def ensure_busybox(host: str, rootfs: Path) -> None:
    """busybox:latest in the daemon at ``host``, imported from a rootfs tarball if missing."""
    env = dict(os.environ, DOCKER_HOST=host)
    if subprocess.run([DOCKER, "image", "inspect", "busybox:latest"], env=env, capture_output=True).returncode == 0:
        return
    subprocess.run([DOCKER, "import", "--change", 'CMD ["sh"]', str(rootfs), "busybox:latest"], env=env,
                   check=True, capture_output=True)


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
        terminate(self.proc, 60)

    def cleanup(self) -> None:
        self.stop()
        subprocess.run(["umount", "-R", str(self.data / "data")], capture_output=True)
        shutil.rmtree(self.data, ignore_errors=True)
        shutil.rmtree(self.run, ignore_errors=True)
