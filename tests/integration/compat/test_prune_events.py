"""Prunes announce themselves on the events stream as dockerd does (daemon/prune.go, volume
service): one ``prune`` event per prune, with no actor ID and the ``reclaimed`` bytes as an
attribute (networks always "0"), whether or not anything was removed.

Each prune uses a label filter no object carries, so it removes nothing of other tests'.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

pytestmark = pytest.mark.root


def _events_since(docker, since: float, kind: str) -> list[dict]:
    r = docker("events", "--since", f"{since:.3f}", "--until", f"{time.time() + 0.5:.3f}",
               "--filter", f"type={kind}", "--filter", "event=prune", "--format", "{{json .}}")
    assert r.returncode == 0, r
    return [json.loads(line) for line in r.stdout.splitlines()]


@pytest.mark.parametrize("kind", ["container", "image", "network", "volume"])
def test_prune_emits_event(docker, kind):
    """Docker 20.10+, API 1.41: `docker <kind> prune` -> event Type=<kind>, Action=prune,
    Actor.ID "", Actor.Attributes {"reclaimed": "<bytes>"}."""
    since = time.time() - 0.1
    r = docker(kind, "prune", "-f", "--filter", f"label=berth.test.none={uuid.uuid4().hex}")
    assert r.returncode == 0, r
    evs = _events_since(docker, since, kind)
    assert len(evs) >= 1, evs
    ev = evs[-1]
    assert (ev["Type"], ev["Action"], ev["Actor"]["ID"]) == (kind, "prune", "")
    assert ev["Actor"]["Attributes"] == {"reclaimed": "0"}
    assert "id" not in ev


def test_container_prune_event_counts_reclaimed(docker):
    """Docker 20.10+: `reclaimed` is the SpaceReclaimed of the prune's answer."""
    label = f"berth.test.prune={uuid.uuid4().hex}"
    name = f"pr-{uuid.uuid4().hex[:8]}"
    assert docker("run", "--name", name, "--label", label, "busybox", "sh", "-c",
                  "head -c 4096 /dev/zero > /big").returncode == 0
    since = time.time() - 0.1
    r = docker("container", "prune", "-f", "--filter", f"label={label}")
    assert r.returncode == 0, r
    assert name not in docker("ps", "-a", "--format", "{{.Names}}").stdout.split()
    ev = _events_since(docker, since, "container")[-1]
    assert int(ev["Actor"]["Attributes"]["reclaimed"]) >= 4096
