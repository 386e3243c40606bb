"""``GET /containers/json`` serves kept entries (issue 12): after every kind of change a
container can go through, the list must equal an entry made afresh. ``size=1`` bypasses
the kept entries (sizes are measured per request), so it is the reference here: the same
JSON, key order included, less the two size keys."""

from __future__ import annotations

import json
import subprocess
from typing import Any
from urllib.parse import quote

import pytest

from tests.integration.conftest import DOCKER
from tests.integration.daemon import Daemon

pytestmark = pytest.mark.root


def _list(d: Daemon, query: str) -> list[dict[str, Any]]:
    status, body = d.request("GET", f"/containers/json?{query}")
    assert status == 200, body
    out: list[dict[str, Any]] = json.loads(body)
    return out


def _same_as_fresh(d: Daemon, ids: list[str]) -> list[dict[str, Any]]:
    _list(d, "all=1")  # warm: entries made and kept
    kept = [e for e in _list(d, "all=1") if e["Id"] in ids]
    fresh = [e for e in _list(d, "all=1&size=1") if e["Id"] in ids]
    for e in fresh:
        e.pop("SizeRw", None)
        e.pop("SizeRootFs", None)
    assert [list(e) for e in kept] == [list(e) for e in fresh]  # Docker's key order
    assert kept == fresh
    return kept


def test_kept_entries_follow_every_change(berthd: Daemon, busybox: str) -> None:
    def docker(*args: str) -> str:
        p = subprocess.run([DOCKER, *args], env=berthd.env, capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        return p.stdout.strip()

    net = "listcache-net"
    ids = [docker("create", "--name", "lc-a", "-p", "127.0.0.1::80", "--label", "k=v", busybox, "sleep", "60"),
           docker("create", "--name", "lc-b", "-v", "lc-vol:/data", busybox, "true")]
    try:
        docker("network", "create", net)
        entries = _same_as_fresh(berthd, ids)
        assert {e["State"] for e in entries} == {"created"}
        docker("start", "lc-a")
        entries = _same_as_fresh(berthd, ids)
        a = next(e for e in entries if e["Names"] == ["/lc-a"])
        assert a["State"] == "running" and a["Status"].startswith("Up ") and a["Ports"][0]["PublicPort"]
        docker("rename", "lc-a", "lc-a2")
        assert next(e for e in _same_as_fresh(berthd, ids) if e["Id"] == ids[0])["Names"] == ["/lc-a2"]
        docker("network", "connect", net, "lc-a2")  # only the sandbox changes
        entries = _same_as_fresh(berthd, ids)
        assert net in next(e for e in entries if e["Id"] == ids[0])["NetworkSettings"]["Networks"]
        docker("network", "disconnect", net, "lc-a2")
        entries = _same_as_fresh(berthd, ids)
        assert net not in next(e for e in entries if e["Id"] == ids[0])["NetworkSettings"]["Networks"]
        docker("start", "-a", "lc-b")
        docker("kill", "lc-a2")
        entries = _same_as_fresh(berthd, ids)
        assert {e["State"] for e in entries} == {"exited"}
        assert next(e for e in entries if e["Id"] == ids[1])["Mounts"][0]["Name"] == "lc-vol"
        docker("rm", "lc-b")
        assert [e["Id"] for e in _same_as_fresh(berthd, ids)] == [ids[0]]
        assert [e["Names"] for e in _list(berthd, "all=1&filters=" + quote(json.dumps({"name": ["lc-a2"]})))] == [["/lc-a2"]]
    finally:
        subprocess.run([DOCKER, "rm", "-f", *ids], env=berthd.env, capture_output=True)
        subprocess.run([DOCKER, "network", "rm", net], env=berthd.env, capture_output=True)
        subprocess.run([DOCKER, "volume", "rm", "lc-vol"], env=berthd.env, capture_output=True)
