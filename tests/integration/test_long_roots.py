"""Roots whose paths are long: the sockets under them (fork server, shims) pass the 108-byte
AF_UNIX limit, and berthd still runs, execs, restores and stops containers (issue 16)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest

from tests.integration.daemon import Daemon, running

pytestmark = pytest.mark.root
DOCKER = "/usr/local/bin/docker"
LENGTH = 100


def _long(base: Path, kind: str) -> Path:
    """A directory path of exactly LENGTH characters under ``base``."""
    head = f"{base}/{kind}-"
    return Path(head + "x" * (LENGTH - len(head)))


@pytest.fixture
def long_daemon() -> Iterator[Daemon]:
    d = Daemon()
    d.data_root = _long(d.base, "data")
    d.exec_root = _long(d.base, "exec")
    assert len(str(d.exec_root)) == len(str(d.data_root)) == LENGTH
    with running(d):
        yield d


def test_containers_run_exec_restore_and_stop_under_100_character_roots(long_daemon: Daemon):
    d = long_daemon
    r = d.docker("run", "--rm", "busybox", "echo", "hello")
    assert (r.returncode, r.stdout) == (0, "hello\n"), r.stderr
    r = d.docker("run", "-d", "--name", "long", "busybox", "sleep", "600")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.strip()
    # the shim's socket is named after the container, under the long exec root
    assert len(str(d.exec_root / "shims" / f"{cid}.sock")) > 108
    assert (d.exec_root / "shims" / f"{cid}.sock").exists()
    r = d.docker("exec", "long", "echo", "from exec")
    assert (r.returncode, r.stdout) == (0, "from exec\n"), r.stderr

    d.kill9()  # live restore: the new berthd finds the shim again through its long path
    d.start()
    status, body = d.request("GET", "/containers/long/json")
    assert status == 200 and json.loads(body)["State"]["Running"], body
    r = d.docker("exec", "long", "echo", "after restore")
    assert (r.returncode, r.stdout) == (0, "after restore\n"), r.stderr
    r = d.docker("stop", "-t", "1", "long")
    assert r.returncode == 0, r.stderr
    status, body = d.request("GET", "/containers/long/json")
    assert status == 200 and json.loads(body)["State"]["Status"] == "exited", body
    r = d.docker("rm", "long")
    assert r.returncode == 0, r.stderr
