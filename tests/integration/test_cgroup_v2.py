"""The engine on cgroup v2, end to end, on a v1 host: berthd pointed at the host's cgroup2 mount
(BERTH_CGROUP_ROOT) runs containers through the v2 code. On a pure v2 host the whole suite
already runs on v2; on a hybrid host only the controllers attached to cgroup2 can limit."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.integration.daemon import Daemon

pytestmark = pytest.mark.root
DOCKER = "/usr/local/bin/docker"
UNIFIED = Path("/sys/fs/cgroup/unified")


@pytest.fixture(scope="module")
def v2_daemon():
    if not (UNIFIED / "cgroup.controllers").exists():
        pytest.skip("no separate cgroup2 mount at /sys/fs/cgroup/unified (a pure v1 or pure v2 host)")
    d = Daemon(env={"BERTH_CGROUP_ROOT": str(UNIFIED)})
    d.start()
    d.import_busybox()
    try:
        yield d
    finally:
        d.cleanup()


def test_containers_run_in_v2_cgroups(v2_daemon: Daemon):
    d = v2_daemon
    assert d.docker("info", "--format", "{{.CgroupVersion}}").stdout.strip() == "2"
    assert d.docker("run", "--rm", "busybox", "echo", "hi").stdout == "hi\n"
    cid = d.docker("run", "-d", "busybox", "sleep", "30").stdout.strip()
    cg = UNIFIED / "berth" / cid
    try:
        pid = int(d.docker("inspect", "-f", "{{.State.Pid}}", cid).stdout)
        assert str(pid) in (cg / "cgroup.procs").read_text().split()
        # v2's default is a private cgroup namespace: the container sees its cgroup as the root
        assert d.docker("inspect", "-f", "{{.HostConfig.CgroupnsMode}}", cid).stdout.strip() == "private"
        assert "0::/\n" in d.docker("exec", cid, "cat", "/proc/self/cgroup").stdout
        # pause/unpause through cgroup.freeze
        assert d.docker("pause", cid).returncode == 0
        assert "frozen 1" in (cg / "cgroup.events").read_text()
        assert d.docker("inspect", "-f", "{{.State.Status}}", cid).stdout.strip() == "paused"
        assert d.docker("unpause", cid).returncode == 0
        assert "frozen 0" in (cg / "cgroup.events").read_text()
        assert "sleep 30" in d.docker("top", cid).stdout
        assert d.docker("stats", "--no-stream", cid).returncode == 0
        assert d.docker("stop", "-t", "1", cid).returncode == 0
        deadline = time.monotonic() + 5
        while cg.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not cg.exists(), "the container's v2 cgroup outlived it"
    finally:
        d.docker("rm", "-f", cid)


def test_limit_without_its_v2_controller_is_a_clear_error(v2_daemon: Daemon):
    available = (UNIFIED / "cgroup.controllers").read_text().split()
    if "pids" in available:
        pytest.skip("the pids controller is attached to cgroup2 here: nothing to refuse")
    r = v2_daemon.docker("run", "--rm", "--pids-limit", "10", "busybox", "true")
    assert r.returncode == 125
    assert "controller(s) pids not available" in r.stderr
    assert v2_daemon.request("GET", "/_ping")[0] == 200
    # (the previous test's container's cgroup goes with its shim, just after `rm -f` returns)
    deadline = time.monotonic() + 5
    while (left := [p.name for p in (UNIFIED / "berth").iterdir() if len(p.name) == 64]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert left == [], "a cgroup was left behind"
    assert v2_daemon.docker("ps", "-aq").stdout == ""  # the --rm container is gone
