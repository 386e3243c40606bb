"""berthd answers /_ping before it has recovered its containers, and every other request waits
for the recovery: a client hammering the socket from the moment it appears never sees a
container in the state it had before berthd went away."""

from __future__ import annotations

import json
import subprocess
import threading
import time

import pytest

from tests.integration.daemon import Daemon, running

pytestmark = pytest.mark.root
DOCKER = "/usr/local/bin/docker"


@pytest.fixture
def own_daemon():
    with running(Daemon()) as d:
        yield d


def _poll(d: Daemon, out: list[tuple[float, list[dict]]], stop: threading.Event) -> None:
    while not stop.is_set() and len(out) < 30:
        t0 = time.monotonic()
        try:
            status, body = d.request("GET", "/containers/json?all=1", timeout=30)
        except OSError:
            time.sleep(0.001)
            continue
        if status == 200:
            out.append((t0, json.loads(body)))


def test_requests_during_recovery_see_recovered_containers(own_daemon: Daemon):
    d = own_daemon
    env = d.env

    def docker(*args: str) -> str:
        return subprocess.run([DOCKER, *args], env=env, capture_output=True, text=True, check=True).stdout.strip()
    long = docker("run", "-d", "--name", "long", "busybox", "sleep", "300")
    short = docker("run", "-d", "--name", "short", "busybox", "sh", "-c", "sleep 1; exit 7")
    d.kill9()
    time.sleep(2)  # "short" exits while berthd is away
    seen: list[tuple[float, list[dict]]] = []
    stop = threading.Event()
    poller = threading.Thread(target=_poll, args=(d, seen, stop))
    poller.start()
    try:
        t0 = time.monotonic()
        ping = d.start()
    finally:
        time.sleep(0.5)
        stop.set()
        poller.join()
    assert seen, "no answer to GET /containers/json"
    assert seen[0][0] < t0 + ping + 0.05, "the first list was not asked for while berthd was starting"
    for _, cs in seen:
        by_id = {c["Id"]: c for c in cs}
        assert by_id[long]["State"] == "running"
        assert by_id[short]["State"] == "exited" and by_id[short]["Status"].startswith("Exited (7)"), by_id[short]
