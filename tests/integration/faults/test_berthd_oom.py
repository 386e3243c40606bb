"""berthd itself OOM-killed: berthd (only it: its fork server and shims stay where they were)
is moved into a memory cgroup of this test's own with a limit just above what it uses, and a
client sends it a huge request during a churn. The kernel kills berthd; a new berthd finds
every running container again, on a consistent store."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.integration.daemon import Daemon
from tests.integration.faults.conftest import Churn, assert_consistent, assert_up, run_detached, start_ready

pytestmark = pytest.mark.root
MEMORY = Path("/sys/fs/cgroup/memory")


@pytest.fixture
def memcg() -> Iterator[Path]:
    root = MEMORY if (MEMORY / "memory.limit_in_bytes").exists() else Path("/sys/fs/cgroup")
    if not (root / "cgroup.procs").exists():
        pytest.skip("no memory cgroup hierarchy")
    cg = root / f"berth-faults-oom-{os.getpid()}"
    cg.mkdir()
    try:
        yield cg
    finally:
        for pid in (cg / "cgroup.procs").read_text().split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while True:
            try:
                cg.rmdir()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


def _limit(cg: Path, extra: int) -> None:
    if (cg / "memory.limit_in_bytes").exists():  # v1
        usage = int((cg / "memory.usage_in_bytes").read_text())
        (cg / "memory.limit_in_bytes").write_text(str(usage + extra))
    else:
        usage = int((cg / "memory.current").read_text())
        (cg / "memory.max").write_text(str(usage + extra))
        if (cg / "memory.swap.max").exists():
            (cg / "memory.swap.max").write_text("0")


def _oom_kills(cg: Path) -> int:
    for name in ("memory.oom_control", "memory.events"):
        f = cg / name
        if f.exists():
            for line in f.read_text().splitlines():
                k, _, v = line.partition(" ")
                if k == "oom_kill":
                    return int(v)
    return -1


def test_berthd_oom_killed(own_daemon: Daemon, memcg: Path):
    d = own_daemon
    assert d.proc is not None
    running = [run_detached(d, "sleep", "300") for _ in range(2)]
    (memcg / "cgroup.procs").write_text(str(d.proc.pid))
    _limit(memcg, 24 << 20)
    with Churn(d, seed=8) as churn:
        time.sleep(0.5)
        big = json.dumps({"Image": "busybox", "Cmd": ["true"], "Env": ["X=" + "x" * 1024] * (40 << 10)}).encode()
        try:
            d.request("POST", "/containers/create", big, {"Content-Type": "application/json"}, timeout=60)
        except OSError:
            pass  # berthd died under us: that is the point
        try:
            d.proc.wait(30)
        except Exception:
            raise AssertionError(f"berthd was not OOM-killed (oom_kill {_oom_kills(memcg)})") from None
        assert d.proc.returncode == -signal.SIGKILL, d.proc.returncode
        assert _oom_kills(memcg) >= 1
        for cid in running:  # the containers outlive berthd
            assert (d.exec_root / "shims" / f"{cid}.sock").exists()
        start_ready(d)  # outside the limited cgroup, as a supervisor would restart it
        ok = churn.ok
        deadline = time.monotonic() + 30
        while churn.ok < ok + 2:
            assert time.monotonic() < deadline, "the churn did not go on after the restart"
            time.sleep(0.1)
    assert_consistent(d, running=running, gone=churn.created)
    assert_up(d)
