"""kill -9 of a container's shim during a churn: the container is reported exited with 137
(Docker's code for a container killed when its shim dies), its logs so far are kept, nothing
of it is left running, and every other container goes on."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.integration.daemon import Daemon
from tests.integration.faults.conftest import Churn, api, assert_consistent, assert_up, docker, run_detached

pytestmark = pytest.mark.root


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("PPid:")).split()[1])


def _wait_log(d: Daemon, cid: str, text: str) -> None:
    deadline = time.monotonic() + 10
    while text not in docker(d, "logs", cid).stdout:
        assert time.monotonic() < deadline, f"{text!r} never logged"
        time.sleep(0.1)


def _inspect(d: Daemon, cid: str) -> dict:
    status, info = api(d, "GET", f"/containers/{cid}/json")
    assert status == 200 and isinstance(info, dict), info
    return info


@pytest.mark.parametrize("tty", [False, True])
def test_kill_9_of_a_shim(own_daemon: Daemon, tty: bool):
    d = own_daemon
    other = run_detached(d, "sleep", "300")
    args = ["-t"] if tty else []
    victim = docker(d, "run", "-d", *args, "busybox", "sh", "-c", "echo before; exec sleep 300").stdout.strip()
    assert victim
    _wait_log(d, victim, "before")
    pid = _inspect(d, victim)["State"]["Pid"]
    shim = _ppid(pid)
    assert shim in d.shim_pids()
    with Churn(d, seed=1) as churn:
        time.sleep(0.5)
        os.kill(shim, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _inspect(d, victim)["State"]["Running"]:
            assert time.monotonic() < deadline, "the container is still reported running"
            time.sleep(0.05)
        time.sleep(0.5)
    st = _inspect(d, victim)["State"]
    assert st["Status"] == "exited" and st["ExitCode"] == 137, st
    assert docker(d, "wait", victim).stdout.strip() == "137"
    assert "before" in docker(d, "logs", victim).stdout
    assert churn.ok > 0, "the churn stalled"
    assert_consistent(d, running=[other], gone=churn.created)
    # and it starts again, with its old logs kept
    assert docker(d, "start", victim).returncode == 0
    assert _inspect(d, victim)["State"]["Running"]
    assert_up(d)
