"""Rootless berthd on fuse-overlayfs (issue 15): the storage where the kernel cannot mount
overlayfs in a user namespace, forced here with BERTH_ROOTLESS_STORAGE=fuse-overlayfs (this
kernel can). The rootfs is served by a fuse-overlayfs daemon of the engine's (a subordinate id
on the host, not a process of the container), gone with the container; whiteouts and opaque
dirs survive a commit; ``docker info`` names the driver.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.rootless.user import RootlessDaemon, module_daemon

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def fuse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RootlessDaemon]:
    if not Path("/dev/fuse").exists():
        pytest.fail("needs /dev/fuse")
    yield from module_daemon(tmp_path_factory, env={"BERTH_ROOTLESS_STORAGE": "fuse-overlayfs"},
                             tool="fuse-overlayfs")


def _fuse_daemons(d: RootlessDaemon) -> list[int]:
    out = []
    for p in d.user.pids():
        try:
            if Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")[0].endswith(b"fuse-overlayfs"):
                out.append(p)
        except FileNotFoundError:
            pass
    return out


def test_info_names_fuse_overlayfs(fuse: RootlessDaemon) -> None:
    info = json.loads(fuse.docker("info", "--format", "{{json .}}").stdout)
    assert info["Driver"] == "fuse-overlayfs"
    assert "Storage Driver: fuse-overlayfs" in fuse.docker("info").stdout


def test_a_container_runs_on_fuse_overlayfs_and_it_goes_with_the_container(fuse: RootlessDaemon) -> None:
    r = fuse.docker("run", "-d", "--name", "fz", "busybox", "sh", "-c",
                    "rm -f /bin/ls && rm -rf /home && mkdir /home && touch /home/new && echo w > /w && exec sleep 3301")
    assert r.returncode == 0, r.stderr
    try:
        deadline = time.monotonic() + 10
        while not _fuse_daemons(fuse) and time.monotonic() < deadline:
            time.sleep(0.1)
        daemons = _fuse_daemons(fuse)
        assert len(daemons) == 1
        assert os.stat(f"/proc/{daemons[0]}").st_uid == fuse.user.subuid_start()   # the engine's root
        r = fuse.docker("exec", "fz", "sh", "-c", "grep ' / ' /proc/mounts | cut -d' ' -f3; cat /w; ls /home; "
                        "test -e /bin/ls || echo gone; ps -o comm | grep -c fuse || true")
        assert r.stdout.split() == ["fuse.fuse-overlayfs", "w", "new", "gone", "0"], r.stdout + r.stderr
        assert fuse.docker("stop", "-t", "1", "fz").returncode == 0
        deadline = time.monotonic() + 10
        while _fuse_daemons(fuse) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _fuse_daemons(fuse) == []     # unmounted at the exit: fuse-overlayfs is gone
        assert fuse.docker("commit", "fz", "fz:1").returncode == 0
        r = fuse.docker("run", "--rm", "fz:1", "sh", "-c", "cat /w; ls /home; test -e /bin/ls || echo gone")
        assert r.stdout == "w\nnew\ngone\n", r.stdout + r.stderr
        assert fuse.docker("start", "fz").returncode == 0   # a restart mounts it again
        assert fuse.docker("exec", "fz", "cat", "/w").stdout == "w\n"
    finally:
        fuse.docker("rm", "-f", "fz")
        fuse.docker("rmi", "fz:1")
    deadline = time.monotonic() + 10
    while _fuse_daemons(fuse) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _fuse_daemons(fuse) == []
