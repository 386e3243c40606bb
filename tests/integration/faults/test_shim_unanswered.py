"""A shim that is alive but does not answer berthd's Wait (a refused connect: a full listen
backlog when a restarted berthd reconnects to every shim at once) is watched again. Before,
berthd gave such a shim one second, then took it for dead and killed its container, and the
cleanup of the "released" cgroup killed it too: the kill -9 fault test once found a long-running
container stopped after a restart."""

from __future__ import annotations

import json
import socket
import time

import pytest

from tests.integration.daemon import Daemon
from tests.integration.faults.conftest import run_detached, start_ready

pytestmark = pytest.mark.root


def _running(d: Daemon, cid: str) -> bool:
    status, body = d.request("GET", f"/containers/{cid}/json")
    return status == 200 and json.loads(body)["State"]["Running"]


def test_a_live_shim_that_refuses_the_wait_is_watched_again(own_daemon: Daemon):
    d = own_daemon
    cid = run_detached(d, "sleep", "600")
    sock = d.exec_root / "shims" / f"{cid}.sock"
    hidden = sock.with_name(sock.name + ".hidden")
    d.kill9()
    sock.rename(hidden)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(sock))  # a socket file nobody listens on: connect() is refused
    dead.close()
    try:
        start_ready(d)
        time.sleep(2.5)  # past the second berthd gives a shim that vanished
        assert _running(d, cid)
    finally:
        sock.unlink()
        hidden.rename(sock)
    time.sleep(1.5)  # the monitor's next Wait gets through
    assert _running(d, cid)
    status, _ = d.request("POST", f"/containers/{cid}/stop?t=1")
    assert status == 204
    status, body = d.request("POST", f"/containers/{cid}/wait", timeout=10)
    assert status == 200 and json.loads(body)["StatusCode"] == 137, body
    assert not _running(d, cid)
