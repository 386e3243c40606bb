"""The exit hop (docs/performance.md, "The start path", sixth round): the shim tells berthd of
an exit (the record, the waiters) before it removes the container's cgroup, and berthd starts
the container again only once the shim has let go of it. A shim that dies in between (killed
here at its first cgroup rmdir, by strace's fault injection) has told the exit already, and
berthd removes the cgroup it left."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.conftest import DOCKER
from tests.integration.daemon import Daemon

pytestmark = pytest.mark.root


def _docker(d: Daemon, *args: str, timeout: float = 60) -> str:
    return subprocess.run([DOCKER, *args], env=d.env, check=True, capture_output=True, text=True,
                          timeout=timeout).stdout.strip()


def _cgroup_dirs(pid: int) -> list[Path]:
    """The container's own cgroup directories (v1: one per hierarchy; v2: one)."""
    out = []
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        if ctrls == "" and "berth" in path:
            out.append(Path("/sys/fs/cgroup") / path.lstrip("/"))
        elif ctrls and "berth" in path:
            name = ctrls.split(",")[0].removeprefix("name=")
            for mount in (Path("/sys/fs/cgroup") / ctrls, Path("/sys/fs/cgroup") / name):
                if mount.is_dir():
                    out.append(mount / path.lstrip("/"))
                    break
    return out


def _until(cond: object, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def test_exit_is_told_before_the_cgroup_goes_and_a_shim_dying_between_leaves_nothing(
        berthd: Daemon, busybox: str, tmp_path: Path) -> None:
    if shutil.which("strace") is None:
        pytest.fail("strace is not installed (.ci/run installs it)")
    gate = tmp_path / "gate"
    gate.mkdir()
    cid = _docker(berthd, "run", "-d", "--network", "none", "-v", f"{gate}:/g", busybox, "sh", "-c",
                  "while [ ! -e /g/go ]; do sleep 0.02; done; exit 3")
    try:
        pid = int(_docker(berthd, "inspect", "-f", "{{.State.Pid}}", cid))
        dirs = _cgroup_dirs(pid)
        assert dirs and all(d.is_dir() for d in dirs), dirs
        shim = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])  # the init's parent
        # the shim dies at its first rmdir: after the exit was told, or before (the old order)
        tracer = subprocess.Popen(["strace", "-qq", "-o", "/dev/null", "-e", "trace=rmdir", "-e",
                                   "inject=rmdir:signal=SIGKILL", "-p", str(shim)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            assert _until(lambda: "TracerPid:\t0\n" not in Path(f"/proc/{shim}/status").read_text())
            (gate / "go").touch()
            code = _docker(berthd, "wait", cid)
        finally:
            tracer.send_signal(signal.SIGINT)
            tracer.wait(10)
        assert code == "3"  # the process's own code, not 137: the shim had told the exit
        assert _until(lambda: not Path(f"/proc/{shim}").exists()), "the shim was not killed at its rmdir"
        # berthd removes what the shim left
        assert _until(lambda: not any(d.exists() for d in dirs)), [d for d in dirs if d.exists()]
        # and the container starts again, in a cgroup of its own
        assert subprocess.run([DOCKER, "start", "-a", cid], env=berthd.env, capture_output=True,
                              timeout=60).returncode == 3
    finally:
        subprocess.run([DOCKER, "rm", "-f", cid], env=berthd.env, capture_output=True)


def test_a_quick_restart_waits_for_the_last_shim(berthd: Daemon, busybox: str) -> None:
    """``docker start`` right after the exit: the new start's cgroup is made after the last
    run's shim removed its own (a start racing those rmdirs would fail to join its cgroup)."""
    cid = _docker(berthd, "create", "--network", "none", busybox, "true")
    try:
        for _ in range(5):
            assert subprocess.run([DOCKER, "start", "-a", cid], env=berthd.env, capture_output=True,
                                  timeout=60).returncode == 0
        assert _docker(berthd, "inspect", "-f", "{{.State.ExitCode}} {{.State.Error}}", cid) == "0"
    finally:
        subprocess.run([DOCKER, "rm", "-f", cid], env=berthd.env, capture_output=True)
