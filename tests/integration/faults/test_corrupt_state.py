"""Corrupt and truncated state files: berthd comes up (no crash loop), moves what it cannot
read to ``<data-root>/quarantine/`` with an error in its log, and keeps everything else."""

from __future__ import annotations

import json
import sqlite3
import time

import pytest

from tests.integration.daemon import Daemon
from tests.integration.faults.conftest import api, assert_consistent, assert_up, docker, run_detached, start_ready

pytestmark = pytest.mark.root


def _sql(d: Daemon, sql: str, args: tuple[object, ...] = ()) -> None:
    conn = sqlite3.connect(d.data_root / "berth.db")
    try:
        conn.execute(sql, args)
        conn.commit()
    finally:
        conn.close()


def _log_since(d: Daemon, offset: int) -> str:
    return d.log.read_bytes()[offset:].decode(errors="replace")


def _status(d: Daemon, cid: str) -> dict:
    status, info = api(d, "GET", f"/containers/{cid}/json")
    assert status == 200 and isinstance(info, dict), info
    return info["State"]


def test_corrupt_records_and_files_are_quarantined(own_daemon: Daemon):
    d = own_daemon
    running = run_detached(d, "sleep", "300")
    bad_record = docker(d, "create", "busybox", "true").stdout.strip()
    bad_exit = run_detached(d, "sh", "-c", "sleep 1; exit 4")
    second_id = json.loads(d.import_busybox("second:latest").splitlines()[-1])["status"]
    assert second_id.startswith("sha256:"), second_id
    d.kill9()
    time.sleep(1.5)  # bad_exit exits meanwhile; its shim records exit.json
    exit_file = d.data_root / "containers" / bad_exit / "exit.json"
    assert exit_file.exists()
    exit_file.write_bytes(b'{"exit_code": 4, "fini')  # truncated
    _sql(d, "UPDATE containers SET data=? WHERE id=?", (b"\x00garbage", bad_record))
    _sql(d, "UPDATE images SET config=substr(config, 1, 40) WHERE id=?", (second_id,))
    offset = d.log.stat().st_size
    start_ready(d)
    log = _log_since(d, offset)
    assert f"containers {bad_record}: unreadable record" in log, log[-2000:]
    assert f"images {second_id}: unreadable record" in log
    assert "exit.json is unreadable" in log
    q = d.data_root / "quarantine"
    assert (q / f"containers-{bad_record}").read_bytes() == b"\x00garbage"
    assert (q / "containers" / bad_record).is_dir(), "the container's files were not kept"
    assert api(d, "GET", f"/containers/{bad_record}/json")[0] == 404
    st = _status(d, bad_exit)
    assert st["Status"] == "exited" and not st["Running"]
    images = docker(d, "images", "--format", "{{.Repository}}").stdout.split()
    assert images == ["busybox"], images
    assert_consistent(d, running=[running])
    assert_up(d)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_unreadable_database_is_quarantined(own_daemon: Daemon, damage: str):
    d = own_daemon
    cid = docker(d, "create", "--name", "kept", "busybox", "true").stdout.strip()
    d.stop()
    db = d.data_root / "berth.db"
    if damage == "garbage":
        db.write_bytes(b"this is not an SQLite file" * 200)
    else:
        size = db.stat().st_size
        with open(db, "r+b") as f:
            f.truncate(size // 3 or 100)
    offset = d.log.stat().st_size
    start_ready(d)  # no crash loop: it comes up
    log = _log_since(d, offset)
    assert "state database" in log and "is unreadable" in log, log[-2000:]
    moved = list((d.data_root / "quarantine").glob("berth.db.*/berth.db"))
    assert len(moved) == 1
    assert (d.data_root / "quarantine" / "containers" / cid).is_dir(), "the container's files were not kept"
    status, listed = api(d, "GET", "/containers/json?all=1")
    assert status == 200 and listed == []
    d.import_busybox()
    assert_consistent(d)
    assert_up(d)
    d.stop()  # and the new database is a good one
    start_ready(d)
    assert docker(d, "images", "-q").stdout.strip()
