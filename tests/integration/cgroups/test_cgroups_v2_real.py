"""cgroup v2 on the real kernel.

On a pure v2 host this uses /sys/fs/cgroup itself. On a hybrid host (v1 controllers plus a
cgroup2 mount at /sys/fs/cgroup/unified) the cgroup2 hierarchy is real but has only the
controllers no v1 hierarchy holds (often none, or just hugetlb): controllers are bound to one
hierarchy kernel-wide, so a fresh cgroup2 mount, even in a new mount namespace, shows the same
set. Then the core interface (cgroup.procs, cgroup.freeze/events, cgroup.kill, cpu.stat) and
any controller present are exercised for real, and each limit test that needs an absent
controller is skipped with the reason; the limit-writing logic is covered by the tmp_path
fakes in tests/unit/cgroups.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from berth.runtime.cgroups import Layout, detect
from cgroup_child import Child, root_only, scratch_cgroup, spin

pytestmark = root_only


def _find_v2() -> Path | None:
    main = detect()
    if main.version == 2:
        return main.root
    return main.unified


@pytest.fixture(scope="module")
def layout() -> Layout:
    root = _find_v2()
    if root is None:
        pytest.skip("no cgroup2 hierarchy mounted on this host")
    return detect(root)


def _controllers(layout: Layout) -> set[str]:
    return set((layout.root / "cgroup.controllers").read_text().split())


def _need(layout: Layout, ctrl: str) -> None:
    if ctrl not in _controllers(layout):
        pytest.skip(f"cgroup2 at {layout.root} lacks the {ctrl} controller "
                    f"(available: {' '.join(sorted(_controllers(layout))) or 'none'}; bound to v1?)")


def test_add_and_pids(layout) -> None:
    with scratch_cgroup(layout) as cg:
        assert cg.version == 2
        child = Child(spin)
        try:
            cg.add(child.pid)
            assert cg.pids() == [child.pid]
            line = [ln for ln in open(f"/proc/{child.pid}/cgroup").read().splitlines() if ln.startswith("0::")]
            assert line == ["0::" + cg.path]
            assert "populated 1" in (cg.paths()[""] / "cgroup.events").read_text()
        finally:
            child.cleanup()


def test_freeze_thaw(layout) -> None:
    with scratch_cgroup(layout) as cg:
        child = Child(spin)
        try:
            cg.add(child.pid)
            child.go()
            time.sleep(0.05)
            cg.freeze()
            assert "frozen 1" in (cg.paths()[""] / "cgroup.events").read_text()
            a = child.count()
            time.sleep(0.1)
            assert child.count() == a, "counter moved while frozen"
            cg.thaw()
            time.sleep(0.05)
            assert child.count() > a
        finally:
            child.cleanup()


def test_kill_all_uses_cgroup_kill(layout) -> None:
    with scratch_cgroup(layout) as cg:
        if not (cg.paths()[""] / "cgroup.kill").exists():
            pytest.skip("kernel < 5.14: no cgroup.kill")
        kids = [Child(spin) for _ in range(3)]
        try:
            for k in kids:
                cg.add(k.pid)
                k.go()
            cg.kill_all(signal.SIGKILL)
            for k in kids:
                status = k.wait()
                assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
            assert cg.pids() == []
        finally:
            for k in kids:
                k.cleanup()


def test_kill_all_other_signal(layout) -> None:
    with scratch_cgroup(layout) as cg:
        child = Child(spin)
        try:
            cg.add(child.pid)
            child.go()
            cg.kill_all(signal.SIGTERM)
            assert os.WTERMSIG(child.wait()) == signal.SIGTERM
        finally:
            child.cleanup()


def test_cpu_stat_is_core(layout) -> None:
    with scratch_cgroup(layout) as cg:
        child = Child(spin)
        try:
            cg.add(child.pid)
            child.go()
            time.sleep(0.1)
            s = cg.stats()
            assert s["cpu"]["usage_ns"] > 10_000_000
            assert not cg.oom_killed()
        finally:
            child.cleanup()


def test_destroy(layout) -> None:
    with scratch_cgroup(layout) as cg:
        d = cg.paths()[""]
        (d / "sub").mkdir()
        cg.destroy()
        assert not d.exists()
        cg.destroy()


def test_hugetlb_limit_written_for_real(layout) -> None:
    _need(layout, "hugetlb")
    root_ctl = layout.root / "cgroup.subtree_control"
    before = set(root_ctl.read_text().split())
    try:
        with scratch_cgroup(layout, {"hugepageLimits": [{"pageSize": "2MB", "limit": 8 << 20}]}) as cg:
            d = cg.paths()[""]
            assert "hugetlb" in (d.parent / "cgroup.subtree_control").read_text().split()
            assert int((d / "hugetlb.2MB.max").read_text()) == 8 << 20
    finally:
        added = set(root_ctl.read_text().split()) - before
        if added:  # leave the host's root as we found it
            root_ctl.write_text(" ".join("-" + c for c in sorted(added)))


def test_limit_without_controller_names_the_file(layout) -> None:
    if "pids" in _controllers(layout):
        pytest.skip("pids controller is available here; nothing to refuse")
    from berth.runtime.cgroups import open_cgroup

    cg = open_cgroup(f"/berth-test-nopids-{os.getpid()}", layout)
    try:
        with pytest.raises(OSError) as ei:
            cg.create({"pids": {"limit": 10}})
        assert "pids" in str(ei.value) and ei.value.filename.endswith("cgroup.controllers")
    finally:
        cg.destroy()


@pytest.mark.parametrize("ctrl,resources,file,expected", [
    ("pids", {"pids": {"limit": 10}}, "pids.max", "10"),
    ("memory", {"memory": {"limit": 64 << 20}}, "memory.max", str(64 << 20)),
    ("cpu", {"cpu": {"shares": 1024, "quota": 50000, "period": 100000}}, "cpu.max", "50000 100000"),
])
def test_limits_for_real(layout, ctrl, resources, file, expected) -> None:
    _need(layout, ctrl)
    with scratch_cgroup(layout, resources) as cg:
        assert (cg.paths()[""] / file).read_text().strip() == expected


def test_fresh_cgroup2_mount_has_same_controllers(layout, tmp_path: Path) -> None:
    """Documents why v2 limits cannot be tested on a hybrid host: a new cgroup2 mount in a private
    mount namespace is the same hierarchy, with the same controllers."""
    if detect().version == 2:
        pytest.skip("pure v2 host")
    mnt = tmp_path / "cg2"
    mnt.mkdir()
    out = subprocess.run(
        ["unshare", "-m", "sh", "-c",
         f"mount --make-rprivate / && mount -t cgroup2 none {mnt} && cat {mnt}/cgroup.controllers"],
        capture_output=True, text=True, timeout=10)
    if out.returncode != 0:
        pytest.skip(f"cannot mount cgroup2 in a new mount namespace: {out.stderr.strip()}")
    assert set(out.stdout.split()) == _controllers(layout)
