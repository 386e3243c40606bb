"""The data root (SQLite file, container dirs, logs) on a full disk during a churn: requests
that need space fail with Docker's "no space left on device", berthd stays up and answers,
running containers go on, an exit that happens meanwhile is not lost, and once space is
freed everything works again on a consistent store (SQLite's integrity check included)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.integration.daemon import Daemon, suite_args
from tests.integration.faults.conftest import DOCKER, Churn, docker_or_log, run_daemon, api, assert_consistent, assert_up, docker, run_detached, start_ready

pytestmark = pytest.mark.root


@pytest.fixture
def small_disk() -> Iterator[Daemon]:
    """A berthd whose data root is a 48 MiB tmpfs (a symlink to it: the leak checks look for
    mounts under the daemon's base)."""
    if os.geteuid() != 0:
        pytest.skip("needs uid 0")
    disk = Path(tempfile.mkdtemp(prefix="berth-disk-", dir="/tmp"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m,mode=0711", "tmpfs", str(disk)], check=True)
    try:
        d = Daemon(args=suite_args())
        d.base.mkdir(parents=True, exist_ok=True)
        (d.base / "data").symlink_to(disk)
        yield from run_daemon(d)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
        disk.rmdir()


def _fill(path: Path) -> None:
    """Fill the disk (again: the churn frees space as it removes containers)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (1 << 20, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)


def _wait_empty(trash: Path) -> None:
    deadline = time.monotonic() + 10
    while any(trash.iterdir()):
        assert time.monotonic() < deadline, f"{trash} is not emptied"
        time.sleep(0.05)


def _truncate_wal(db: Path) -> None:
    """Empty SQLite's WAL: records written into a WAL of the size it had need no more space
    (it is reused from its start after each checkpoint), and the disk would not look full."""
    conn = sqlite3.connect(db, timeout=10)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        conn.close()


def _integrity(db: Path) -> str:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def test_full_disk(small_disk: Daemon):
    d = small_disk
    running = [run_detached(d, "sleep", "300") for _ in range(2)]
    soon = run_detached(d, "sh", "-c", "echo bye; sleep 2; exit 3")
    filler = d.data_root / "filler"
    fitted: list[str] = []  # containers created on the full disk all the same
    with Churn(d, seed=4) as churn:
        time.sleep(0.5)
        late = subprocess.Popen([DOCKER, "run", "--rm", "busybox", "sh", "-c", "sleep 2; echo late"], env=d.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1)
        _fill(filler)
        t_full = time.monotonic()
        r = docker_or_log(d, "run", "--rm", "busybox", "true", timeout=30)
        assert r.returncode == 0 or r.returncode == 125 and "no space left on device" in r.stderr, \
            (r.returncode, r.stderr)
        with churn.paused():  # the churn's removals free space (the trash, in the background)
            _wait_empty(d.data_root / "trash")
            os.truncate(filler, 0)  # room for the checkpoint
            _truncate_wal(d.data_root / "berth.db")
            _fill(filler)
            for _ in range(20):  # a record may still fit in SQLite's WAL, a dir needs no block
                status, body = api(d, "POST", "/containers/create", {"Image": "busybox", "Cmd": ["true"]})
                if status != 201 or not isinstance(body, dict):
                    break
                fitted.append(body["Id"])
        assert status == 500 and isinstance(body, dict) and "no space left on device" in body["message"], body
        assert docker(d, "ps", "-a").returncode == 0
        assert docker(d, "wait", soon).stdout.strip() == "3"
        # a run in flight when the disk filled: its output reaches the client (the log drops
        # it, the container is not killed for it) and --rm does not hang it
        out, err = late.communicate(timeout=30)
        assert late.returncode == 0 and out == "late\n", (late.returncode, out, err)
        time.sleep(max(0.0, 1.5 - (time.monotonic() - t_full)))
        assert d.proc is not None and d.proc.poll() is None, "berthd died on a full disk"
        ok_full = churn.ok
        filler.unlink()
        for cid in fitted:
            assert api(d, "DELETE", f"/containers/{cid}")[0] == 204
        deadline = time.monotonic() + 20
        while churn.ok < ok_full + 2:
            assert time.monotonic() < deadline, "the churn did not recover once space was freed"
            time.sleep(0.1)
    assert_consistent(d, running=running, gone=churn.created)
    assert _integrity(d.data_root / "berth.db") == "ok"
    assert docker(d, "logs", soon).stdout == "bye\n"
    d.stop()  # the exit recorded on the full disk outlives berthd
    start_ready(d)
    st = api(d, "GET", f"/containers/{soon}/json")[1]
    assert isinstance(st, dict) and st["State"]["Status"] == "exited" and st["State"]["ExitCode"] == 3, st
    assert_consistent(d, running=running)
    assert_up(d)
