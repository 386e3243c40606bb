"""Restart policies when berthd starts after a crash, as dockerd 28's restore() applies them:
a container that is not running at boot is started if its policy says so (container.ShouldRestart:
``always`` yes, even if the user stopped it; ``unless-stopped`` unless the user stopped it;
``on-failure[:N]`` if its exit code is not 0 and RestartCount < N), with RestartCount reset to 0
(containerStart with resetRestartManager) and one ``start`` event; an exit that happened while
the daemon was down is recorded without a ``die`` event (nobody heard it), and one whose status
was lost with its shim (a host reboot) is exit code 255."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.integration.daemon import Daemon, running, suite_args

pytestmark = pytest.mark.root
DOCKER = "/usr/local/bin/docker"
# Echoes "run" at each start, waits until the test drops /x/<name>, removes it, exits with $1.
WAIT = "echo run; while [ ! -f /x/$0 ]; do sleep 0.05; done; rm /x/$0; exit $1"


@pytest.fixture
def daemon(tmp_path: Path):
    if os.geteuid() != 0:
        pytest.skip("needs uid 0")
    with running(Daemon(args=suite_args())) as d:
        yield d


def _run(d: Daemon, x: Path, name: str, policy: str, code: int) -> str:
    r = d.docker("run", "-d", "--name", name, "--restart", policy, "-v", f"{x}:/x", "busybox",
                 "sh", "-c", WAIT, name, str(code))
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def _inspect(d: Daemon, ref: str) -> dict:
    status, body = d.request("GET", f"/containers/{ref}/json")
    assert status == 200, body
    return json.loads(body)


def _wait(pred, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return False
    except ProcessLookupError:
        return True


def _events(d: Daemon, since: float, name: str) -> list[str]:
    r = d.docker("events", "--since", f"{since:.3f}", "--until", f"{time.time() + 0.3:.3f}",
                 "--filter", "type=container", "--filter", f"container={name}", "--format", "{{.Action}}")
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def _settled(d: Daemon, name: str, running: bool) -> dict:
    """Its state once the boot's restarts are done (running, or still exited a second on)."""
    if running:
        assert _wait(lambda: _inspect(d, name)["State"]["Running"]), _inspect(d, name)["State"]
    else:
        time.sleep(1)
    return _inspect(d, name)


def test_policies_after_berthd_crash(daemon: Daemon, tmp_path: Path):
    """Docker 28 (daemon.restore): berthd killed -9, then `fail` (on-failure:3) exits 7 and `ok`
    (on-failure:3) exits 0 while it is down: at the next start `fail` is started again
    (RestartCount 0, one start event, no die), `ok` stays exited 0; `always` stopped by the user
    runs again, `unless` (unless-stopped) stopped by the user does not."""
    d, x = daemon, tmp_path
    fail = _run(d, x, "fail", "on-failure:3", 7)
    ok = _run(d, x, "ok", "on-failure:3", 0)
    for name in ("always", "unless"):
        _run(d, x, name, "always" if name == "always" else "unless-stopped", 0)
        assert d.docker("stop", "-t", "1", name).returncode == 0
    pids = [_inspect(d, c)["State"]["Pid"] for c in (fail, ok)]
    d.kill9()
    for name in ("fail", "ok"):
        (x / name).touch()
    assert _wait(lambda: all(_gone(p) for p in pids)), "the containers did not exit"
    boot = time.time()
    d.start()
    st = _settled(d, "fail", running=True)
    assert st["RestartCount"] == 0 and st["State"]["Status"] == "running", (st["RestartCount"], st["State"])
    assert d.docker("logs", "fail").stdout.split() == ["run", "run"]
    assert _events(d, boot, "fail") == ["start"]
    st = _settled(d, "ok", running=False)["State"]
    assert (st["Status"], st["ExitCode"]) == ("exited", 0)
    assert _events(d, boot, "ok") == []
    assert _settled(d, "always", running=True)["State"]["Running"]
    assert _events(d, boot, "always") == ["start"]
    st = _settled(d, "unless", running=False)["State"]
    assert st["Status"] == "exited"
    assert _events(d, boot, "unless") == []


def test_policies_after_host_reboot(daemon: Daemon, tmp_path: Path):
    """Docker 28 (daemon.restore): berthd, the shims and the containers all killed (a reboot):
    the exits were never recorded, so each is 255; `fail` (on-failure:3) starts again, `spent`
    (on-failure:2 that already used its 2 restarts) and `none` (no policy) stay exited."""
    d, x = daemon, tmp_path
    fail = _run(d, x, "fail", "on-failure:3", 0)
    none = _run(d, x, "none", "no", 0)
    # `spent` fails twice at once (restarted by the policy), then waits on its third run
    r = d.docker("run", "-d", "--name", "spent", "--restart", "on-failure:2", "-v", f"{x}:/x", "busybox", "sh",
                 "-c", "echo run >> /x/count; [ $(wc -l < /x/count) -ge 3 ] && exec sleep 300; exit 1")
    assert r.returncode == 0, r.stderr
    assert _wait(lambda: _inspect(d, "spent")["RestartCount"] == 2 and _inspect(d, "spent")["State"]["Running"])
    pids = [_inspect(d, c)["State"]["Pid"] for c in (fail, none, "spent")]
    shims = d.shim_pids()
    assert shims
    d.kill9()
    for pid in shims + pids:
        os.kill(pid, signal.SIGKILL)
    assert _wait(lambda: all(_gone(p) for p in shims + pids))
    boot = time.time()
    d.start()
    st = _settled(d, "fail", running=True)
    assert st["RestartCount"] == 0 and st["State"]["Status"] == "running", (st["RestartCount"], st["State"])
    assert _events(d, boot, "fail") == ["start"]
    for name in ("spent", "none"):
        c = _settled(d, name, running=False)
        assert (c["State"]["Status"], c["State"]["ExitCode"]) == ("exited", 255), (name, c["State"])
        assert _events(d, boot, name) == []
    assert _inspect(d, "spent")["RestartCount"] == 2


def test_times_across_a_restart_at_boot(daemon: Daemon, tmp_path: Path):
    """Docker 28 (restore, then SetRunning, which leaves FinishedAt alone): `fail`
    (on-failure:3) exits 7 while berthd is down and is started at boot: its FinishedAt is that
    exit's time (not 0001-01-01), between the old StartedAt and the new one."""
    d, x = daemon, tmp_path
    fail = _run(d, x, "fail", "on-failure:3", 7)
    before = _inspect(d, fail)["State"]
    assert before["FinishedAt"] == "0001-01-01T00:00:00Z"
    d.kill9()
    (x / "fail").touch()
    assert _wait(lambda: _gone(before["Pid"])), "the container did not exit"
    d.start()
    st = _settled(d, "fail", running=True)["State"]
    assert st["FinishedAt"] != "0001-01-01T00:00:00Z", st
    assert before["StartedAt"] < st["FinishedAt"] <= st["StartedAt"], (before, st)
