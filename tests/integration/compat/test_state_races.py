"""State races: a call that changes a container's state is finished when it returns.

dockerd answers ``POST /kill`` with SIGKILL only once the container has stopped, ``wait``
only once the exit is recorded, and emits kill -> die -> stop (or destroy) in that order.
Clients rely on it: docker-py's ``c.kill(); c.remove()`` and the CLI's ``docker kill x && docker rm x``.
Races show only now and then, so the sensitive cases run in a loop.
"""

from __future__ import annotations

import json
import time

import docker
import pytest

pytestmark = pytest.mark.root
ROUNDS = 20
MANY = "for i in $(seq 400); do sleep 300 & done; wait"


def _after_run(client: docker.DockerClient, cid: str, since: float) -> list[dict]:
    """The container's events after its create and start (a finite stream: until is given)."""
    evs = list(client.events(since=since, until=time.time() + 0.5, decode=True,
                             filters={"container": cid, "type": "container"}))
    assert [e["Action"] for e in evs[:2]] == ["create", "start"], evs
    return evs[2:]


def _events(client: docker.DockerClient, cid: str, since: float) -> list[str]:
    return [e["Action"] for e in _after_run(client, cid, since)]


def test_kill_returns_after_the_container_stopped(client):
    """Docker 1.13+, API 1.25+: after POST /kill (SIGKILL) answers, inspect says not running."""
    for _ in range(ROUNDS):
        c = client.containers.run("busybox", "sleep 300", detach=True)
        try:
            c.kill()
            st = client.api.inspect_container(c.id)["State"]
            assert (st["Status"], st["Running"], st["Pid"]) == ("exited", False, 0)
            assert st["ExitCode"] == 137 and not st["FinishedAt"].startswith("0001-")
        finally:
            c.remove(force=True)


def test_kill_then_remove_without_force(client):
    """Docker 1.13+, API 1.25+: docker-py's kill() then remove() never gets 409."""
    for _ in range(ROUNDS):
        c = client.containers.run("busybox", "sleep 300", detach=True)
        c.kill()
        c.remove()
        with pytest.raises(docker.errors.NotFound):
            client.containers.get(c.id)


def test_cli_kill_and_rm(docker):
    """Docker 20.10+, API 1.41: `docker kill x && docker rm x` succeeds every time."""
    for i in range(ROUNDS):
        name = f"race-kill-rm-{i}"
        # many processes: the kernel takes a while to empty the pid namespace after SIGKILL
        assert docker("run", "-d", "--name", name, "busybox", "sh", "-c", MANY).returncode == 0
        time.sleep(0.3)
        k = docker("kill", name)
        r = docker("rm", name)
        if r.returncode != 0:
            docker("rm", "-f", name)
        assert k.returncode == 0, k.stderr
        assert r.returncode == 0, r.stderr


def test_kill_wait_reload_shows_exited(client):
    """Docker 1.13+, API 1.25+: after kill() and wait(), reload() shows exited with 137."""
    for _ in range(ROUNDS):
        c = client.containers.run("busybox", "sleep 300", detach=True)
        try:
            c.kill()
            assert c.wait()["StatusCode"] == 137
            c.reload()
            assert c.status == "exited" and c.attrs["State"]["ExitCode"] == 137
        finally:
            c.remove(force=True)


def test_kill_event_precedes_die(client):
    """Docker 20.10+, API 1.41: docker kill emits kill (signal=9) and then die (exitCode=137)."""
    since = time.time() - 1
    c = client.containers.run("busybox", "sleep 300", detach=True)
    try:
        c.kill()
        evs = _after_run(client, c.id, since)
    finally:
        c.remove(force=True)
    actions = [e["Action"] for e in evs]
    assert actions == ["kill", "die"], actions
    assert evs[0]["Actor"]["Attributes"]["signal"] == "9"
    assert evs[1]["Actor"]["Attributes"]["exitCode"] == "137"


def test_stop_events_kill_die_stop(client):
    """Docker 20.10+, API 1.41: docker stop emits kill (the stop signal), die, then stop."""
    since = time.time() - 1
    c = client.containers.run("busybox", ["sh", "-c", "trap 'exit 3' TERM; sleep 300 & wait"], detach=True)
    time.sleep(0.3)  # the trap is set
    try:
        c.stop(timeout=10)
        evs = _after_run(client, c.id, since)
    finally:
        c.remove(force=True)
    assert [e["Action"] for e in evs] == ["kill", "die", "stop"], evs
    assert evs[0]["Actor"]["Attributes"]["signal"] == "15"
    assert evs[1]["Actor"]["Attributes"]["exitCode"] == "3"


def test_stop_timeout_events_kill_kill_die_stop(client):
    """Docker 20.10+, API 1.41: a stop that times out emits kill (15), kill (9), die, stop."""
    c = client.containers.run("busybox", "sleep 300", detach=True)  # PID 1 ignores SIGTERM
    since = time.time() - 1
    try:
        c.stop(timeout=1)
        evs = _after_run(client, c.id, since)
    finally:
        c.remove(force=True)
    assert [(e["Action"], e["Actor"]["Attributes"].get("signal")) for e in evs] == \
        [("kill", "15"), ("kill", "9"), ("die", None), ("stop", None)], evs


def test_restart_events(client):
    """Docker 20.10+, API 1.41: docker restart emits kill, die, stop, start, restart."""
    since = time.time() - 1
    c = client.containers.run("busybox", ["sh", "-c", "trap 'exit 0' TERM; sleep 300 & wait"], detach=True)
    time.sleep(0.3)
    try:
        c.restart(timeout=10)
        actions = _events(client, c.id, since)
        c.reload()
        assert c.status == "running"
    finally:
        c.remove(force=True)
    assert actions == ["kill", "die", "stop", "start", "restart"], actions


def test_rm_force_events_kill_die_destroy(client):
    """Docker 20.10+, API 1.41: docker rm -f of a running container emits kill, die, destroy."""
    since = time.time() - 1
    c = client.containers.run("busybox", "sleep 300", detach=True)
    c.remove(force=True)
    assert _events(client, c.id, since) == ["kill", "die", "destroy"]


def test_kill_of_stopped_container_is_409(berthd, busybox, client):
    """Docker 20.10+, API 1.41: a second kill after the first returned gets 409 "is not running",
    wrapped by the router as every kill error (20.10's "Cannot kill container: X:", 25+'s lower case)."""
    c = client.containers.run("busybox", "sleep 300", detach=True)
    try:
        c.kill()
        status, body = berthd.request("POST", f"/containers/{c.id}/kill")
        assert status == 409
        assert json.loads(body)["message"] == f"cannot kill container: {c.id}: Container {c.id} is not running"
    finally:
        c.remove(force=True)


def test_rm_force_while_the_container_exits(client):
    """Docker 20.10+, API 1.41: rm -f of a container that is exiting after a SIGTERM kill
    succeeds (never a 500 from the container's exit racing the removal)."""
    for _ in range(ROUNDS):
        c = client.containers.run("busybox", ["sh", "-c", "trap 'exit 0' TERM; " + MANY], detach=True)
        time.sleep(0.3)
        c.kill(signal="SIGTERM")
        c.remove(force=True)
        with pytest.raises(docker.errors.NotFound):
            client.containers.get(c.id)
