"""State.FinishedAt across starts as dockerd 28 keeps it (moby container/state.go: SetRunning
sets StartedAt only; FinishedAt is set by SetStopped/SetRestarting and kept through the next
start): 0001-01-01 until the first exit, then the last exit's time, running or not. The boot's
restarts are in test_restart_at_boot.py."""

from __future__ import annotations

import json
import uuid

import pytest

pytestmark = pytest.mark.root
ZERO = "0001-01-01T00:00:00Z"


def _state(docker, name: str) -> dict:
    r = docker("inspect", name)
    assert r.returncode == 0, r
    return json.loads(r.stdout)[0]["State"]


def test_finished_at_kept_across_restart_and_start(docker):
    """Docker 28, API 1.50: a new container's FinishedAt is zero; after `docker restart` it is
    the stop's time (after the first StartedAt, not after the new one); after stop + start the
    same."""
    name = f"fin-{uuid.uuid4().hex[:8]}"
    assert docker("run", "-d", "--name", name, "busybox", "sleep", "300").returncode == 0
    try:
        first = _state(docker, name)
        assert first["FinishedAt"] == ZERO
        assert docker("restart", "-t", "0", name).returncode == 0
        st = _state(docker, name)
        assert st["Running"] and st["FinishedAt"] != ZERO
        assert first["StartedAt"] < st["FinishedAt"] <= st["StartedAt"], (first, st)
        assert docker("stop", "-t", "0", name).returncode == 0
        stopped = _state(docker, name)["FinishedAt"]
        assert docker("start", name).returncode == 0
        st2 = _state(docker, name)
        assert st2["Running"] and st2["FinishedAt"] == stopped and st2["StartedAt"] > stopped, (stopped, st2)
    finally:
        docker("rm", "-f", name)
