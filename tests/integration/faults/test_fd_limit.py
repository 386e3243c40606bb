"""berthd under ``ulimit -n 256`` (set on the running berthd with prlimit), its descriptors
used up by idle clients during a churn: requests fail with a clear error ("too many open
files"), berthd does not crash, and everything works again once descriptors are freed."""

from __future__ import annotations

import os
import socket
import subprocess
import time

import pytest

from tests.integration.daemon import Daemon
from tests.integration.faults.conftest import Churn, api, assert_consistent, assert_up, docker, run_detached

pytestmark = pytest.mark.root
LIMIT = 256


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _exhaust(d: Daemon, pid: int, spare: int) -> list[socket.socket]:
    """Idle connections to berthd until it has fewer than ``spare`` descriptors left."""
    held: list[socket.socket] = []
    while (before := _fds(pid)) < LIMIT - spare and len(held) < 2 * LIMIT:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(2)
        s.connect(str(d.sock))
        held.append(s)
        deadline = time.monotonic() + 2  # until berthd accepted it
        while _fds(pid) <= before and time.monotonic() < deadline:
            time.sleep(0.002)
    return held


def _wait_up(d: Daemon) -> None:
    """Until berthd's start-up recovery is over (it runs after the socket answers)."""
    deadline = time.monotonic() + 30
    while b"berthd is up" not in d.log.read_bytes():
        assert time.monotonic() < deadline, "berthd's recovery did not finish"
        time.sleep(0.05)


def test_ulimit_n_256(own_daemon: Daemon):
    d = own_daemon
    assert d.proc is not None
    pid = d.proc.pid
    running = run_detached(d, "sleep", "300")
    _wait_up(d)
    subprocess.run(["prlimit", f"--nofile={LIMIT}:{LIMIT}", f"--pid={pid}"], check=True)
    errors: list[str] = []
    with Churn(d, seed=6, cli=False) as churn:
        with churn.paused():  # measured while nothing else is in flight
            held = _exhaust(d, pid, spare=6)
        try:
            for _ in range(6):
                if errors or churn.errors:
                    break
                try:
                    r = docker(d, "run", "--rm", "busybox", "true", timeout=15)
                except subprocess.TimeoutExpired:
                    continue  # not even accepted (as dockerd, berthd retries accept(2) later)
                if r.returncode != 0:
                    assert r.returncode == 125, (r.returncode, r.stderr)
                    errors.append(r.stderr)
            assert d.proc.poll() is None, "berthd died out of descriptors"
        finally:
            for s in held:
                s.close()
        ok = churn.ok
        deadline = time.monotonic() + 30
        while churn.ok < ok + 2:
            assert time.monotonic() < deadline, "the churn did not recover once descriptors were freed"
            time.sleep(0.1)
    errors += churn.errors
    assert errors, "no request ran out of descriptors: the fault was not injected"
    # Docker's words: the errno's, or (a stop whose exit watch could not be opened) dockerd's own
    clear = ("too many open files", "Tried to kill container, but did not receive an exit event")
    unclear = [e for e in errors if not any(c in e for c in clear)]
    assert not unclear, unclear
    assert api(d, "GET", "/_ping")[0] == 200
    assert_consistent(d, running=[running], gone=churn.created)
    assert_up(d)
    assert _fds(pid) < 100, f"berthd holds {_fds(pid)} descriptors after the clients left"
