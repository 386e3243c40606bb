"""dockerd's shutdown-timeout without live restore (daemon.ShutdownTimeout, shutdownDaemon): at
SIGTERM each container is stopped with its own stop signal and timeout, and the daemon waits
for them at most the shutdown-timeout, or a container's stop timeout + 5 s if that is longer; a
negative value (daemon.json or a SIGHUP reload) waits as long as it takes. ``docker info``
shows none of it."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator

import pytest

from tests.integration.daemon import Daemon, running

pytestmark = pytest.mark.root
DOCKER = "/usr/local/bin/docker"


def _conf(d: Daemon, timeout: int) -> None:
    (d.base / "daemon.json").write_text(json.dumps({"live-restore": False, "shutdown-timeout": timeout}))


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    if os.geteuid() != 0:
        pytest.skip("needs uid 0")
    d = Daemon()
    d.extra_args = ["--config-file", str(d.base / "daemon.json")]
    _conf(d, 1)
    with running(d) as d:
        yield d


def _state(d: Daemon, ref: str) -> dict:
    status, body = d.request("GET", f"/containers/{ref}/json")
    assert status == 200, body
    return json.loads(body)["State"]


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("PPid:")).split()[1])


def _sleeper(d: Daemon, stop_timeout: int) -> str:
    """A container whose PID 1 ignores SIGTERM (sleep has no handler)."""
    r = d.docker("run", "-d", "--stop-timeout", str(stop_timeout), "busybox", "sleep", "300")
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def _exit_time(d: Daemon) -> float:
    assert d.proc is not None
    t0 = time.monotonic()
    d.proc.terminate()
    d.proc.wait(30)
    return time.monotonic() - t0


def test_shutdown_waits_for_a_longer_stop_timeout(daemon: Daemon):
    """Docker 17.05+ (ShutdownTimeout, moby #30944): with shutdown-timeout 1, a container whose
    stop timeout is 3 s and which ignores SIGTERM is killed after its 3 s (137): berthd waits
    for it (up to 3 + 5 s) and exits then; /info has no field for the timeout."""
    d = daemon
    status, body = d.request("GET", "/info")
    assert status == 200 and not [k for k in json.loads(body) if "shutdown" in k.lower()]
    cid = _sleeper(d, 3)
    pid = _state(d, cid)["Pid"]
    took = _exit_time(d)
    d.start()
    assert 3 <= took < 8, took
    st = _state(d, cid)
    assert (st["Status"], st["ExitCode"]) == ("exited", 137), st
    assert not os.path.exists(f"/proc/{pid}")
    d.docker("rm", "-f", cid)


def test_negative_shutdown_timeout_reloaded_waits_as_long_as_it_takes(daemon: Daemon):
    """Docker 17.05+: "shutdown-timeout": -1 (reloaded by SIGHUP, as dockerd's reloadShutdownTimeout)
    waits for the stops however long they take: with the container's shim frozen, berthd is still
    there after the stop timeout + 5 s, and exits once the shim goes on and the kill is done."""
    d = daemon
    assert d.proc is not None
    cid = _sleeper(d, 1)
    shim = _ppid(_state(d, cid)["Pid"])
    assert shim in d.shim_pids()
    _conf(d, -1)
    try:
        d.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while "reloaded shutdown-timeout: -1" not in d.log.read_text():
            assert time.monotonic() < deadline, "shutdown-timeout -1 not reloaded"
            time.sleep(0.05)
        os.kill(shim, signal.SIGSTOP)
        try:
            d.proc.terminate()
            time.sleep(7)  # > the stop timeout (1 s) + 5 s
            assert d.proc.poll() is None, "berthd did not wait for the stop"
        finally:
            os.kill(shim, signal.SIGCONT)
        d.proc.wait(10)
    finally:
        _conf(d, 1)
        d.start()
    st = _state(d, cid)
    assert (st["Status"], st["ExitCode"]) == ("exited", 137), st
    d.docker("rm", "-f", cid)
