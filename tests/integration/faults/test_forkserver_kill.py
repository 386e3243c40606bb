"""kill -9 of the fork server during a churn: berthd starts it again, starts keep working (none
fails for it), and the running containers (whose shims it forked) go on."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.integration.daemon import Daemon
from tests.integration.faults.conftest import Churn, assert_consistent, assert_up, docker, run_detached

pytestmark = pytest.mark.root


def _forkservers(d: Daemon) -> list[int]:
    assert d.proc is not None
    out = []
    for p in os.listdir("/proc"):
        try:
            if p.isdigit() and b"berth.runtime.forkserver" in open(f"/proc/{p}/cmdline", "rb").read() and \
                    f"PPid:\t{d.proc.pid}\n" in open(f"/proc/{p}/status").read():
                out.append(int(p))
        except OSError:
            continue
    return out


def _wait_forkserver(d: Daemon, old: int) -> int:
    deadline = time.monotonic() + 10
    while True:
        now = [p for p in _forkservers(d) if p != old]
        if now:
            return now[0]
        assert time.monotonic() < deadline, "the fork server did not come back"
        time.sleep(0.05)


def test_kill_9_of_the_fork_server(own_daemon: Daemon):
    d = own_daemon
    running = [run_detached(d, "sleep", "300") for _ in range(2)]
    with Churn(d, seed=2) as churn:
        for _ in range(3):  # again and again: each time it comes back
            time.sleep(0.7)
            (fs,) = _forkservers(d)
            os.kill(fs, signal.SIGKILL)
            _wait_forkserver(d, fs)
        time.sleep(0.7)
        before_ok = churn.ok
        # no start fails for the restart: right after a kill, a run works first time
        (fs,) = _forkservers(d)
        os.kill(fs, signal.SIGKILL)
        r = docker(d, "run", "--rm", "busybox", "echo", "after the kill")
        assert r.returncode == 0 and r.stdout == "after the kill\n", r.stderr
        time.sleep(0.7)
    assert churn.ok > before_ok, "the churn stopped after the fork server was killed"
    assert_consistent(d, running=running, gone=churn.created)
    assert_up(d)
