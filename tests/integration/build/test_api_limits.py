"""RUN steps that would take the host down: one that fills the disk, one that forks without
end. Each fails the build with a clear error, berthd stays up, and nothing is left behind.

The disk test never touches the real disk: its berthd keeps its data root on a 64 MiB tmpfs
mounted (and unmounted) here; that berthd also gets a small pids limit so the fork bomb is
cut short quickly."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.integration.build._api import build, containers_all, error, run_output, tar_of, text
from tests.integration.daemon import Daemon, suite_args

pytestmark = pytest.mark.root

PIDS = 64


@pytest.fixture(scope="module")
def small() -> Iterator[Daemon]:
    if os.geteuid() != 0:
        pytest.skip("needs uid 0")
    mnt = Path(tempfile.mkdtemp(prefix="berth-tmpfs-", dir="/tmp"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0711", "berth-test", str(mnt)], check=True)
    d = Daemon(args=suite_args(), env={"BERTH_BUILD_PIDS_LIMIT": str(PIDS)})
    d.data_root = mnt / "data"
    try:
        d.start()
        d.import_busybox("busybox:latest")
        yield d
    finally:
        try:
            d.cleanup()
        finally:
            subprocess.run(["umount", str(mnt)], check=True)
            mnt.rmdir()


def _state(d: Daemon) -> dict[str, object]:
    """What a failed build must not change."""
    root = d.data_root
    with open("/proc/self/mountinfo") as f:
        mounts = sorted(line.split()[4] for line in f if str(root) + "/" in line.split()[4] + "/"
                        and line.split()[4] != str(root.parent))
    return {
        "containers": sorted(c["Id"] for c in containers_all(d)),
        "images": sorted(i["Id"] for i in json.loads(d.request("GET", "/images/json?all=1")[1])),
        "layers": sorted(os.listdir(root / "image" / "layers")) if (root / "image" / "layers").exists() else None,
        "build-tmp": os.listdir(root / "build" / "tmp"),
        "mounts": mounts,
    }


def _free(d: Daemon) -> int:
    st = os.statvfs(d.data_root)
    return st.f_bavail * st.f_frsize


def test_run_that_fills_the_disk_fails_and_leaves_nothing(small):
    before, free = _state(small), _free(small)
    # dd stops at ENOSPC; the step then sleeps on a full disk until the watch kills it
    df = "FROM busybox\nRUN echo filling; dd if=/dev/zero of=/fill bs=1M count=200; sleep 60\nRUN true\n"
    t0 = time.monotonic()
    st, msgs = build(small, tar_of({"Dockerfile": df}), "nocache=1&t=limits/fill")
    assert time.monotonic() - t0 < 30
    err = error(msgs)["error"]
    assert err.startswith("The command '/bin/sh -c echo filling; dd if=/dev/zero of=/fill bs=1M count=200; "
                          "sleep 60' was stopped: no space left on device"), err
    assert "filling\n" in text(msgs) and "Step 3/3" not in text(msgs)
    assert small.request("GET", "/_ping")[0] == 200
    assert _state(small) == before
    assert _free(small) >= free - (1 << 20)  # the partial layer went with the container
    # a step that just runs into ENOSPC and exits says the same
    df = "FROM busybox\nRUN dd if=/dev/zero of=/fill bs=1M count=200\n"
    st, msgs = build(small, tar_of({"Dockerfile": df}), "nocache=1")
    assert "was stopped: no space left on device" in error(msgs)["error"], msgs
    assert _state(small) == before
    # and the daemon builds normally afterwards
    st, msgs = build(small, tar_of({"Dockerfile": "FROM busybox\nRUN echo ok > /ok\n"}), "nocache=1&t=limits/ok")
    assert "error" not in msgs[-1], msgs
    assert run_output(small, "limits/ok", ["cat", "/ok"]) == "ok\n"
    small.request("DELETE", "/images/limits/ok")


def test_fork_bomb_is_stopped_at_the_pids_limit(small):
    before = _state(small)
    df = "FROM busybox\nRUN echo forking; b() { b | b & }; b; sleep 60\n"
    t0 = time.monotonic()
    st, msgs = build(small, tar_of({"Dockerfile": df}), "nocache=1")
    assert time.monotonic() - t0 < 30
    err = error(msgs)["error"]
    assert err == ("The command '/bin/sh -c echo forking; b() { b | b & }; b; sleep 60' was stopped: it ran "
                   f"into the build's limit of {PIDS} processes (fork: resource temporarily unavailable)")
    assert small.request("GET", "/_ping")[0] == 200
    assert _state(small) == before


def test_build_steps_have_a_default_pids_limit(berthd, busybox):
    # not in docker's API: a RUN step's container gets the builder's limit (4096 by default)
    st, msgs = build(berthd, tar_of({"Dockerfile": "FROM busybox\nRUN cat /sys/fs/cgroup/pids/pids.max "
                                                   "/sys/fs/cgroup/pids.max 2>/dev/null; true\n"}), "nocache=1")
    assert "error" not in msgs[-1], msgs
    assert "4096\n" in text(msgs), text(msgs)
