"""cgroup v2 writes against a fake unified root in tmp_path, and the v1->v2 conversions."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from berth.runtime.cgroups import blkio_weight_to_io_weight, detect, open_cgroup, shares_to_weight, v2_swap_max
from cgroupfs_fake import make_v2_cgroup_files, read

CID = "/berth/" + "cd" * 32


@pytest.mark.parametrize("shares,weight", [(2, 1), (1024, 39), (262144, 10000), (512, 20), (0, 0)])
def test_shares_to_weight(shares: int, weight: int) -> None:
    assert shares_to_weight(shares) == weight


def test_blkio_weight_conversion() -> None:
    assert blkio_weight_to_io_weight(10) == 1
    assert blkio_weight_to_io_weight(1000) == 10000
    assert blkio_weight_to_io_weight(500) == 1 + 490 * 9999 // 990


@pytest.mark.parametrize("swap,limit,expected", [
    (128 << 20, 64 << 20, 64 << 20),   # docker -m 64m: swap = 2x limit -> 64m of swap
    (64 << 20, 64 << 20, 0),           # --memory-swap == -m: no swap
    (-1, 64 << 20, -1),                # unlimited swap
    (0, 64 << 20, None),               # unset: do not write
    (None, None, None),
    (0, -1, -1),                       # unlimited memory, swap unset -> both unlimited
])
def test_swap_math(swap, limit, expected) -> None:
    assert v2_swap_max(swap, limit) == expected


@pytest.mark.parametrize("swap,limit", [(128, 0), (64, 128)])
def test_swap_math_invalid(swap, limit) -> None:
    with pytest.raises(ValueError):
        v2_swap_max(swap, limit)


def test_detect_v2(v2_root: Path) -> None:
    layout = detect(v2_root)
    assert layout.version == 2 and layout.root == v2_root and not layout.hierarchies


def test_create_enables_controllers_and_writes_limits(v2_root: Path) -> None:
    d = make_v2_cgroup_files(v2_root, CID)
    cg = open_cgroup(CID, detect(v2_root))
    assert cg.version == 2 and cg.paths() == {"": d}
    cg.create({
        "memory": {"limit": 64 << 20, "swap": 128 << 20, "reservation": 32 << 20},
        "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0"},
        "pids": {"limit": 100},
        "blockIO": {"weight": 500, "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 100}]},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}],
        "devices": [{"allow": False, "access": "rwm"}],
        "unified": {"memory.high": "50000000"},
    })
    for level in (v2_root, v2_root / "berth"):
        enabled = read(level / "cgroup.subtree_control").split()
        assert sorted(enabled) == ["+cpu", "+cpuset", "+hugetlb", "+io", "+memory", "+pids"], level
    assert read(d / "memory.max") == str(64 << 20)
    assert read(d / "memory.swap.max") == str(64 << 20)
    assert read(d / "memory.low") == str(32 << 20)
    assert read(d / "memory.high") == "50000000"
    assert read(d / "cpu.weight") == "39"
    assert read(d / "cpu.max") == "50000 100000"
    assert read(d / "cpuset.cpus") == "0"
    assert read(d / "pids.max") == "100"
    assert read(d / "io.weight") == str(blkio_weight_to_io_weight(500))
    assert read(d / "io.max") == "8:0 wiops=100"
    assert read(d / "hugetlb.2MB.max") == "4194304"


def test_docker_default_writes_nothing_but_enables_stats_controllers(v2_root: Path) -> None:
    d = make_v2_cgroup_files(v2_root, CID)
    open_cgroup(CID, detect(v2_root)).create({
        "devices": [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 1, "minor": 3,
                                                        "access": "rwm"}],
        "memory": {"disableOOMKiller": False}, "cpu": {"shares": 0}, "blockIO": {"weight": 0},
    })
    assert sorted(read(v2_root / "cgroup.subtree_control").split()) == ["+cpu", "+io", "+memory", "+pids"]
    for f in ("memory.max", "cpu.weight", "cpu.max", "pids.max", "io.weight"):
        assert read(d / f) == "", f


@pytest.mark.parametrize("quota,period,expected", [(-1, 100000, "max 100000"), (0, 50000, "max 50000"),
                                                   (20000, 0, "20000")])
def test_cpu_max(v2_root: Path, quota, period, expected) -> None:
    d = make_v2_cgroup_files(v2_root, CID)
    open_cgroup(CID, detect(v2_root)).update({"cpu": {"quota": quota, "period": period}})
    assert read(d / "cpu.max") == expected


def test_swap_skipped_without_swap_file(v2_root: Path) -> None:
    d = make_v2_cgroup_files(v2_root, CID)
    (d / "memory.swap.max").unlink()
    open_cgroup(CID, detect(v2_root)).update({"memory": {"limit": 1 << 26, "swap": 1 << 27}})
    assert read(d / "memory.max") == str(1 << 26)


def test_required_controller_missing(v2_root: Path) -> None:
    make_v2_cgroup_files(v2_root, CID)
    (v2_root / "cgroup.controllers").write_text("cpu io memory\n")
    with pytest.raises(OSError) as ei:
        open_cgroup(CID, detect(v2_root)).create({"pids": {"limit": 10}})
    assert "pids" in str(ei.value) and ei.value.filename.endswith("cgroup.controllers")


def test_already_enabled_controllers_not_rewritten(v2_root: Path, monkeypatch) -> None:
    make_v2_cgroup_files(v2_root, CID)
    for level in (v2_root, v2_root / "berth"):
        (level / "cgroup.subtree_control").write_text("cpuset cpu io memory hugetlb pids\n")
    from berth.runtime.cgroups import _common

    writes = []
    monkeypatch.setattr(_common, "write", lambda d, n, v: writes.append((n, v)))
    open_cgroup(CID, detect(v2_root)).create({"pids": {"limit": 5}})
    assert writes == [("pids.max", "5")]


def test_oom_and_events(v2_root: Path) -> None:
    d = make_v2_cgroup_files(v2_root, CID)
    cg = open_cgroup(CID, detect(v2_root))
    (d / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 0\n")
    assert not cg.oom_killed()
    (d / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert cg.oom_killed()


def test_freeze_writes_and_waits(v2_root: Path) -> None:
    d = make_v2_cgroup_files(v2_root, CID)
    cg = open_cgroup(CID, detect(v2_root))
    (d / "cgroup.events").write_text("populated 1\nfrozen 1\n")  # a fake kernel that froze at once
    cg.freeze()
    assert read(d / "cgroup.freeze") == "1"
    (d / "cgroup.events").write_text("populated 1\nfrozen 0\n")
    cg.thaw()
    assert read(d / "cgroup.freeze") == "0"


def test_freeze_times_out(v2_root: Path) -> None:
    d = make_v2_cgroup_files(v2_root, CID)
    (d / "cgroup.events").write_text("populated 1\nfrozen 0\n")
    with pytest.raises(TimeoutError):
        open_cgroup(CID, detect(v2_root)).freeze(timeout=0.05)


def test_kill_all_sigkill_uses_cgroup_kill(v2_root: Path) -> None:
    d = make_v2_cgroup_files(v2_root, CID)
    open_cgroup(CID, detect(v2_root)).kill_all(signal.SIGKILL)
    assert read(d / "cgroup.kill") == "1"


def test_stats(v2_root: Path) -> None:
    d = make_v2_cgroup_files(v2_root, CID)
    (d / "memory.current").write_text("4096\n")
    (d / "memory.max").write_text("max\n")
    (d / "memory.stat").write_text("anon 100\ninactive_file 5\n")
    (d / "cpu.stat").write_text("usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 2\n")
    (d / "pids.current").write_text("2\n")
    (d / "pids.max").write_text("10\n")
    (d / "io.stat").write_text("8:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0 dios=0\n")
    s = open_cgroup(CID, detect(v2_root)).stats()
    assert s["memory"]["usage"] == 4096 and s["memory"]["limit"] is None
    assert s["memory"]["stats"]["inactive_file"] == 5
    assert s["cpu"]["usage_ns"] == 1_500_000 and s["cpu"]["system_ns"] == 500_000
    assert s["cpu"]["throttling"]["periods"] == 2
    assert s["pids"] == {"current": 2, "limit": 10}
    assert s["blkio"]["read_bytes"] == 100 and s["blkio"]["write_bytes"] == 200
