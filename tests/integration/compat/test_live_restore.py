"""berthd --live-restore=false: SIGTERM stops the containers before berthd exits, as dockerd
does without live restore; at the next start the ones with no restart policy are exited (with
the exit code the stop gave them) and ``always`` / ``unless-stopped`` ones run again."""

from __future__ import annotations

import json
import os
import time

import pytest

from tests.integration.daemon import Daemon, running

pytestmark = pytest.mark.root
DOCKER = "/usr/local/bin/docker"
TRAP = "trap 'exit 3' TERM; sleep 300 & wait"  # exits 3 on SIGTERM (PID 1 ignores it otherwise)


@pytest.fixture(scope="module")
def daemon():
    if os.geteuid() != 0:
        pytest.skip("needs uid 0")
    with running(Daemon(args=["--live-restore=false"])) as d:
        yield d


def _run(d: Daemon, *args: str) -> str:
    r = d.docker("run", "-d", *args)
    assert r.returncode == 0, r.stderr
    time.sleep(0.3)  # the shell has set its trap
    return r.stdout.strip()


def _state(d: Daemon, ref: str) -> dict:
    status, body = d.request("GET", f"/containers/{ref}/json")
    assert status == 200, body
    return json.loads(body)["State"]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def _restart_berthd(d: Daemon) -> float:
    """SIGTERM berthd, wait for it to exit, start it again; returns how long the exit took."""
    assert d.proc is not None
    t0 = time.monotonic()
    d.proc.terminate()
    d.proc.wait(30)
    took = time.monotonic() - t0
    d.start()
    return took


def _wait_running(d: Daemon, ref: str, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        st = _state(d, ref)
        if st["Running"] or time.monotonic() > deadline:
            return st
        time.sleep(0.1)


def test_info_says_live_restore_disabled(daemon):
    """Docker 1.12+, API 1.25+: dockerd --live-restore=false starts and /info says LiveRestoreEnabled false."""
    status, body = daemon.request("GET", "/v1.41/info")
    assert status == 200 and json.loads(body)["LiveRestoreEnabled"] is False


def test_sigterm_stops_container_with_its_stop_signal(daemon):
    """Docker 20.10+, API 1.41: without live restore, SIGTERM to the daemon stops each container
    as docker stop does (SIGTERM first): after a restart it is exited with the code it chose."""
    cid = _run(daemon, "busybox", "sh", "-c", TRAP)
    pid = _state(daemon, cid)["Pid"]
    _restart_berthd(daemon)
    assert not _pid_alive(pid), "the container outlived berthd"
    st = _state(daemon, cid)
    assert (st["Status"], st["Running"], st["ExitCode"]) == ("exited", False, 3)
    daemon.docker("rm", "-f", cid)


def test_sigterm_honours_stop_signal(daemon):
    """Docker 20.10+, API 1.41: the daemon's shutdown sends the container's StopSignal."""
    cid = _run(daemon, "--stop-signal", "USR1", "busybox", "sh", "-c", "trap 'exit 5' USR1; sleep 300 & wait")
    _restart_berthd(daemon)
    st = _state(daemon, cid)
    assert (st["Status"], st["ExitCode"]) == ("exited", 5)
    daemon.docker("rm", "-f", cid)


def test_sigterm_honours_stop_timeout(daemon):
    """Docker 20.10+, API 1.41: a container that ignores the stop signal is killed after its
    StopTimeout (137), and the daemon exits then, not after the default 10 s."""
    cid = _run(daemon, "--stop-timeout", "1", "busybox", "sleep", "300")
    took = _restart_berthd(daemon)
    st = _state(daemon, cid)
    assert (st["Status"], st["ExitCode"]) == ("exited", 137)
    assert 1 <= took < 6, took
    daemon.docker("rm", "-f", cid)


def test_restart_always_runs_again(daemon):
    """Docker 20.10+, API 1.41: a --restart always container stopped by the daemon's shutdown
    is started again when the daemon starts."""
    cid = _run(daemon, "--restart", "always", "busybox", "sh", "-c", TRAP)
    pid = _state(daemon, cid)["Pid"]
    _restart_berthd(daemon)
    assert not _pid_alive(pid)
    st = _wait_running(daemon, cid)
    assert st["Running"] and st["Pid"] != pid
    daemon.docker("rm", "-f", cid)


def test_unless_stopped_runs_again(daemon):
    """Docker 20.10+, API 1.41: an unless-stopped container stopped by the daemon's shutdown
    (not by the user) is started again when the daemon starts."""
    cid = _run(daemon, "--restart", "unless-stopped", "busybox", "sh", "-c", TRAP)
    pid = _state(daemon, cid)["Pid"]
    _restart_berthd(daemon)
    assert not _pid_alive(pid)
    st = _wait_running(daemon, cid)
    assert st["Running"] and st["Pid"] != pid
    daemon.docker("rm", "-f", cid)


def test_unless_stopped_stopped_by_user_stays_exited(daemon):
    """Docker 20.10+, API 1.41: an unless-stopped container the user stopped stays exited
    across the daemon's restart."""
    cid = _run(daemon, "--restart", "unless-stopped", "busybox", "sh", "-c", TRAP)
    assert daemon.docker("stop", cid).returncode == 0
    _restart_berthd(daemon)
    time.sleep(1)
    st = _state(daemon, cid)
    assert (st["Status"], st["ExitCode"]) == ("exited", 3)
    daemon.docker("rm", "-f", cid)



def test_crash_then_start_stops_survivors(daemon):
    """Docker 28 (daemon.restore without live restore: shutdownContainer for a task containerd
    still has, then the restart policies): berthd killed -9 leaves its containers running; its
    next start stops them as docker stop does (the exit code they choose, a die event), and a
    --restart always one runs again (RestartCount 0)."""
    plain = _run(daemon, "busybox", "sh", "-c", TRAP)
    always = _run(daemon, "--restart", "always", "busybox", "sh", "-c", TRAP)
    pids = {c: _state(daemon, c)["Pid"] for c in (plain, always)}
    daemon.kill9()
    assert all(_pid_alive(p) for p in pids.values()), "live containers died with berthd"
    boot = time.time()
    daemon.start()
    st = _state(daemon, plain)
    assert (st["Status"], st["ExitCode"]) == ("exited", 3), st
    assert not _pid_alive(pids[plain]) and not _pid_alive(pids[always])
    st = _wait_running(daemon, always)
    assert st["Running"] and st["Pid"] != pids[always], st
    r = daemon.docker("inspect", "-f", "{{.RestartCount}}", always)
    assert r.stdout.strip() == "0", r
    r = daemon.docker("events", "--since", f"{boot:.3f}", "--until", f"{time.time() + 0.3:.3f}",
                      "--filter", f"container={plain}", "--format", "{{.Action}}")
    assert "die" in r.stdout.split(), r
    daemon.docker("rm", "-f", plain, always)
