"""kill -9 of a shim host during a churn: each container it served (a host serves a group of
up to 8) is reported exited with 137 (Docker's code for a container killed when its shim dies),
its logs so far are kept, nothing of it is left running, and every other container goes on."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from tests.integration.daemon import Daemon, suite_args
from tests.integration.faults.conftest import Churn, api, assert_consistent, assert_up, docker, run_daemon, run_detached

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


@pytest.fixture
def groups_of_two() -> Iterator[Daemon]:
    """Shim hosts of two containers each (berthd's default is 8): a kill takes down a whole
    group, and a container of another group must not notice."""
    if os.geteuid() != 0:
        pytest.skip("needs uid 0")
    yield from run_daemon(Daemon(args=suite_args(), env={"BERTH_SHIM_GROUP": "2"}))


@pytest.mark.parametrize("tty", [False, True])
def test_kill_9_of_a_shim_host(groups_of_two: Daemon, tty: bool):
    d = groups_of_two
    args = ["-t"] if tty else []
    group = [docker(d, "run", "-d", *args, "busybox", "sh", "-c", f"echo before{i}; exec sleep 300").stdout.strip()
             for i in range(2)]
    assert all(group)
    other = run_detached(d, "sleep", "300")  # the next group's
    for i, cid in enumerate(group):
        _wait_log(d, cid, f"before{i}")
    shim = _ppid(_inspect(d, group[0])["State"]["Pid"])
    assert shim in d.shim_pids()
    assert _ppid(_inspect(d, group[1])["State"]["Pid"]) == shim, "the two should share a shim host"
    assert _ppid(_inspect(d, other)["State"]["Pid"]) != shim
    with Churn(d, seed=1) as churn:
        time.sleep(0.5)
        os.kill(shim, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(_inspect(d, cid)["State"]["Running"] for cid in group):
            assert time.monotonic() < deadline, "a container of the killed host is still reported running"
            time.sleep(0.05)
        time.sleep(0.5)
    for i, cid in enumerate(group):
        st = _inspect(d, cid)["State"]
        assert st["Status"] == "exited" and st["ExitCode"] == 137, st
        assert docker(d, "wait", cid).stdout.strip() == "137"
        assert f"before{i}" in docker(d, "logs", cid).stdout
    assert churn.ok > 0, "the churn stalled"
    assert_consistent(d, running=[other], gone=churn.created)
    # and they start again, with their old logs kept
    for i, cid in enumerate(group):
        assert docker(d, "start", cid).returncode == 0
        assert _inspect(d, cid)["State"]["Running"]
        assert f"before{i}" in docker(d, "logs", cid).stdout
    assert_up(d)
