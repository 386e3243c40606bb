"""The shim host the fork server forks ahead (``forkserver._Spare``): a start takes it instead
of forking one on its path, another is forked after it (one at most), and it ends with the
fork server (berthd stopped: nothing left behind)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.conftest import DOCKER
from tests.integration.daemon import Daemon, suite_args

pytestmark = pytest.mark.root


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def _fork_server(d: Daemon) -> int:
    assert d.proc is not None
    for pid in _children(d.proc.pid):
        if b"berth.runtime.forkserver" in Path(f"/proc/{pid}/cmdline").read_bytes():
            return pid
    raise AssertionError("berthd has no fork server")


def _spares(fs: int) -> list[int]:
    """The fork server's children that are not (yet) shims: comm is still the fork server's."""
    out = []
    for pid in _children(fs):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() != "berth-shim":
                out.append(pid)
        except FileNotFoundError:
            pass
    return out


def _wait(cond, what: str, timeout: float = 5.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (value := cond()):
        assert time.monotonic() < deadline, what
        time.sleep(0.02)
    return value


def _ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/status").read_text().split("PPid:")[1].split()[0])


def test_a_start_takes_the_spare_host_and_the_spare_ends_with_berthd() -> None:
    d = Daemon(args=suite_args())
    d.start()
    try:
        d.import_busybox()
        fs = _fork_server(d)
        (spare,) = _wait(lambda: _spares(fs), "no spare shim host after the fork server started")
        cid = subprocess.run([DOCKER, "run", "-d", "busybox:latest", "sleep", "30"], env=d.env, check=True,
                             capture_output=True, text=True).stdout.strip()
        init = int(subprocess.run([DOCKER, "inspect", "-f", "{{.State.Pid}}", cid], env=d.env, check=True,
                                  capture_output=True, text=True).stdout)
        # the init's parent (its helper exited: the host is the subreaper) is the spare of before
        _wait(lambda: _ppid(init) == spare, f"the init's parent is {_ppid(init)}, not the spare {spare}")
        assert Path(f"/proc/{spare}/comm").read_text().strip() == "berth-shim"
        (after,) = _wait(lambda: _spares(fs), "no new spare after the start took one")
        assert after != spare
        for _ in range(3):  # run --rm: each host ends with its container, a spare takes the next
            subprocess.run([DOCKER, "run", "--rm", "busybox:latest", "true"], env=d.env, check=True,
                           capture_output=True)
        time.sleep(0.2)
        assert len(_spares(fs)) == 1, _spares(fs)  # bounded
        subprocess.run([DOCKER, "rm", "-f", cid], env=d.env, check=True, capture_output=True)
        (last,) = _spares(fs)
        os.kill(fs, signal.SIGKILL)  # berthd forks a new fork server; the old spare must go
        _wait(lambda: _gone(last), "the spare outlived its fork server")
        subprocess.run([DOCKER, "run", "--rm", "busybox:latest", "true"], env=d.env, check=True, capture_output=True)
        (spare,) = _wait(lambda: _spares(_fork_server(d)), "no spare from the new fork server")
    finally:
        d.cleanup()
    _wait(lambda: _gone(spare), "the spare outlived berthd")


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except FileNotFoundError:
        return True
