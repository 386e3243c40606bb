"""Shim hosts: one shim process serves a bounded group of containers (docs/performance.md,
"Shim memory"): its memory per container stays under 1 MiB, the containers of a group live and
die independently, and a crash of a host ends its own group's containers only."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator

import pytest

from tests.integration.daemon import Daemon

pytestmark = pytest.mark.root
DOCKER = "/usr/local/bin/docker"


def _daemon(env: dict[str, str] | None = None) -> Iterator[Daemon]:
    d = Daemon(env=env)
    d.start()
    d.import_busybox()
    try:
        yield d
    finally:
        d.cleanup()


@pytest.fixture
def default_group() -> Iterator[Daemon]:
    yield from _daemon()


@pytest.fixture
def groups_of_two() -> Iterator[Daemon]:
    yield from _daemon({"BERTH_SHIM_GROUP": "2"})


def _run_sleepers(d: Daemon, n: int) -> list[str]:
    ids = []
    for _ in range(n):
        p = d.docker("run", "-d", "busybox", "sleep", "600")
        assert p.returncode == 0, p.stderr
        ids.append(p.stdout.strip())
    return ids


def _shims(d: Daemon) -> list[int]:
    out = []
    for p in os.listdir("/proc"):
        try:
            if p.isdigit() and open(f"/proc/{p}/comm").read().strip() == "berth-shim" and \
                    str(d.exec_root) in open(f"/proc/{p}/cmdline").read():
                out.append(int(p))
        except OSError:
            pass
    return sorted(out)


def _private_kib(pid: int) -> int:
    total = 0
    for line in open(f"/proc/{pid}/smaps_rollup"):
        if line.startswith(("Private_Clean:", "Private_Dirty:")):
            total += int(line.split()[1])
    return total


def _ppid(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("PPid:"):
            return int(line.split()[1])
    return -1


def _lives(pid: int) -> bool:
    """Not gone, not a zombie."""
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _state(d: Daemon, cid: str) -> dict:
    status, body = d.request("GET", f"/containers/{cid}/json")
    assert status == 200, body
    state: dict = json.loads(body)["State"]
    return state


def _wait_for(cond, timeout: float = 10) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return False


def test_one_shim_serves_a_group_under_1_mib_per_container(default_group: Daemon):
    d = default_group
    ids = _run_sleepers(d, 4)
    shims = _shims(d)
    assert len(shims) == 1, shims  # the default group holds 8
    # A lone forked shim dirties ~2.1 MiB; four containers share one (measured ~0.55 MiB each).
    per_container = _private_kib(shims[0]) / len(ids)
    assert per_container < 1024, f"{per_container:.0f} KiB of private shim memory per container"

    # The containers of a group live and die on their own.
    assert d.docker("kill", ids[0]).returncode == 0
    assert _wait_for(lambda: not _state(d, ids[0])["Running"])
    p = d.docker("exec", ids[1], "echo", "still here")
    assert p.returncode == 0 and p.stdout == "still here\n", p.stderr
    assert all(_state(d, c)["Running"] for c in ids[1:])
    assert _shims(d) == shims

    # The host leaves with its last container; the fork server, still holding its join
    # socket (the group was not full), finds it gone and forks a new host.
    assert d.docker("rm", "-f", *ids).returncode == 0
    assert _wait_for(lambda: not _shims(d)), _shims(d)
    again = _run_sleepers(d, 1)
    assert _state(d, again[0])["Running"] and len(_shims(d)) == 1
    assert d.docker("rm", "-f", *again).returncode == 0
    assert _wait_for(lambda: not _shims(d)), _shims(d)


def test_a_crashed_host_ends_its_own_group_only(groups_of_two: Daemon):
    d = groups_of_two
    ids = _run_sleepers(d, 3)
    hosts = _shims(d)
    assert len(hosts) == 2, hosts
    first = _state(d, ids[0])["Pid"], _state(d, ids[1])["Pid"]
    assert _ppid(first[0]) == _ppid(first[1]) in hosts  # the inits are their host's children
    crashed = _ppid(first[0])
    os.kill(crashed, signal.SIGKILL)
    try:
        assert _wait_for(lambda: not _state(d, ids[0])["Running"] and not _state(d, ids[1])["Running"])
        # each container of the group is reported killed (137), and berthd killed what was
        # left of them in their cgroups (their inits lost their shim: nobody else would)
        assert _state(d, ids[0])["ExitCode"] == 137 and _state(d, ids[1])["ExitCode"] == 137
        assert _wait_for(lambda: not any(_lives(pid) for pid in first))
        assert _state(d, ids[2])["Running"]
        p = d.docker("exec", ids[2], "echo", "other group")
        assert p.returncode == 0 and p.stdout == "other group\n", p.stderr
        # the next container joins the open group (the other host), never the crashed one
        new = _run_sleepers(d, 1)
        assert _state(d, new[0])["Running"] and _ppid(_state(d, new[0])["Pid"]) != crashed
        ids += new
    finally:
        for pid in first:  # if berthd failed to, end the crashed group's inits here
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        d.docker("rm", "-f", *ids)
    assert _wait_for(lambda: not _shims(d)), _shims(d)
