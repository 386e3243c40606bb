"""cgroup v1 writes against a fake root in tmp_path."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from berth.errors import InvalidArgument, Unsupported
from berth.runtime.cgroups import _common, detect, open_cgroup

from cgroupfs_fake import make_v1_cgroup_files, read, touch

CID = "/berth/" + "ab" * 32

DOCKER_DEFAULT = {
    "devices": [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
        {"allow": True, "type": "c", "major": 136, "minor": -1, "access": "rwm"},
        {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
    ],
    "memory": {"disableOOMKiller": False},
    "cpu": {"shares": 0},
    "blockIO": {"weight": 0},
}


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    """Record every write (dir, file, value) while still writing to the fake files."""
    writes: list[tuple[str, str, str]] = []
    real = _common.write

    def rec(d: str, name: str, value: str) -> None:
        writes.append((d, name, value))
        real(d, name, value)

    monkeypatch.setattr(_common, "write", rec)
    return writes


def test_detect_fake_root(v1_root: Path) -> None:
    layout = detect(v1_root)
    assert layout.version == 1
    assert layout.hierarchies["memory"] == v1_root / "memory"
    assert layout.hierarchies["name=systemd"] == v1_root / "systemd"
    assert len(layout.mounts()) == 9


def test_detect_comounted_symlinks(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    touch(root / "cpu,cpuacct", ["cgroup.procs"])
    (root / "cpu").symlink_to("cpu,cpuacct")
    (root / "cpuacct").symlink_to("cpu,cpuacct")
    layout = detect(root)
    assert layout.hierarchies["cpu"] == layout.hierarchies["cpuacct"] == root / "cpu,cpuacct"
    assert layout.mounts() == [root / "cpu,cpuacct"]


def test_paths_absolute(v1_layout) -> None:
    cg = open_cgroup(CID, v1_layout)
    assert cg.version == 1
    assert cg.paths()["memory"] == v1_layout.hierarchies["memory"] / CID.lstrip("/")


@pytest.mark.parametrize("bad", ["", "/", "..", "../x", "a/../../x"])
def test_bad_paths(v1_layout, bad: str) -> None:
    with pytest.raises(InvalidArgument):
        open_cgroup(bad, v1_layout)


def test_create_makes_every_hierarchy_dir_and_copies_cpuset(v1_root: Path, v1_layout) -> None:
    cg = open_cgroup(CID, v1_layout)
    # what the kernel would create: empty cpuset files at each new level
    for level in ("berth", CID.lstrip("/")):
        touch(v1_root / "cpuset" / level, ["cpuset.cpus", "cpuset.mems"])
    cg.create(None)
    for d in cg.paths().values():
        assert d.is_dir()
    assert read(v1_root / "cpuset" / "berth" / "cpuset.cpus") == "0-3"
    assert read(v1_root / "cpuset" / CID.lstrip("/") / "cpuset.mems") == "0"


def test_cpuset_copied_once_then_cloned_by_the_kernel(v1_root: Path, v1_layout, recorder) -> None:
    """The first container's cpuset is copied from its parent, whose cgroup.clone_children is
    then set, so the kernel fills the next ones at mkdir: nothing more to write for them."""
    for level in ("berth", CID.lstrip("/")):
        touch(v1_root / "cpuset" / level, ["cpuset.cpus", "cpuset.mems"])
    touch(v1_root / "cpuset" / "berth", ["cgroup.clone_children"], "0")
    open_cgroup(CID, v1_layout).create(None)
    assert read(v1_root / "cpuset" / "berth" / "cgroup.clone_children") == "1"
    assert [n for _, n, _ in recorder if n.startswith("cpuset")] == ["cpuset.cpus", "cpuset.mems"] * 2
    recorder.clear()
    other = "/berth/" + "cd" * 32
    touch(v1_root / "cpuset" / other.lstrip("/"), ["cpuset.cpus"], "0-3")  # what the kernel cloned
    touch(v1_root / "cpuset" / other.lstrip("/"), ["cpuset.mems"], "0")
    open_cgroup(other, v1_layout).create(None)
    assert recorder == []
    assert not (v1_root / "cpuset" / "cgroup.clone_children").exists() or \
        read(v1_root / "cpuset" / "cgroup.clone_children") != "1"  # the root's is never set


def test_docker_default_writes_only_devices(v1_root: Path, v1_layout, recorder) -> None:
    make_v1_cgroup_files(v1_root, CID)
    open_cgroup(CID, v1_layout).create(DOCKER_DEFAULT)
    assert [(name, value) for _, name, value in recorder] == [
        ("devices.deny", "a *:* rwm"),
        ("devices.allow", "c 1:5 rwm"),
        ("devices.allow", "c 136:* rwm"),
        ("devices.deny", "c 10:229 rwm"),
    ]


def test_limits(v1_root: Path, v1_layout) -> None:
    dirs = make_v1_cgroup_files(v1_root, CID)
    open_cgroup(CID, v1_layout).create({
        "memory": {"limit": 64 << 20, "swap": 128 << 20, "reservation": 32 << 20, "disableOOMKiller": True},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0-1", "mems": "0"},
        "pids": {"limit": 100},
        "blockIO": {"weight": 300, "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}]},
    })
    mem = dirs["memory"]
    assert read(mem / "memory.limit_in_bytes") == str(64 << 20)
    assert read(mem / "memory.memsw.limit_in_bytes") == str(128 << 20)
    assert read(mem / "memory.soft_limit_in_bytes") == str(32 << 20)
    assert read(mem / "memory.oom_control") == "1"
    assert read(dirs["cpu"] / "cpu.shares") == "512"
    assert read(dirs["cpu"] / "cpu.cfs_quota_us") == "50000"
    assert read(dirs["cpu"] / "cpu.cfs_period_us") == "100000"
    assert read(dirs["cpuset"] / "cpuset.cpus") == "0-1"
    assert read(dirs["pids"] / "pids.max") == "100"
    assert read(dirs["blkio"] / "blkio.weight") == "300"
    assert read(dirs["blkio"] / "blkio.throttle.read_bps_device") == "8:0 1048576"


@pytest.mark.parametrize("limit,expected", [(0, "max"), (-1, "max"), (7, "7")])
def test_pids_limit(v1_root: Path, v1_layout, limit: int, expected: str) -> None:
    dirs = make_v1_cgroup_files(v1_root, CID)
    open_cgroup(CID, v1_layout).create({"pids": {"limit": limit}})
    assert read(dirs["pids"] / "pids.max") == expected


def _mem_writes(recorder) -> list[tuple[str, str]]:
    return [(n, v) for _, n, v in recorder if n.startswith("memory.")]


def test_v1_memory_order_raising(v1_root: Path, v1_layout, recorder) -> None:
    dirs = make_v1_cgroup_files(v1_root, CID)
    (dirs["memory"] / "memory.limit_in_bytes").write_text(str(64 << 20))
    open_cgroup(CID, v1_layout).update({"memory": {"limit": 256 << 20, "swap": 512 << 20}})
    # current limit 64M < new memsw 512M: memsw first, or the kernel refuses limit > memsw
    assert _mem_writes(recorder) == [
        ("memory.memsw.limit_in_bytes", str(512 << 20)),
        ("memory.limit_in_bytes", str(256 << 20)),
    ]


def test_v1_memory_order_lowering(v1_root: Path, v1_layout, recorder) -> None:
    dirs = make_v1_cgroup_files(v1_root, CID)
    (dirs["memory"] / "memory.limit_in_bytes").write_text(str(1 << 30))
    open_cgroup(CID, v1_layout).update({"memory": {"limit": 64 << 20, "swap": 128 << 20}})
    assert _mem_writes(recorder) == [
        ("memory.limit_in_bytes", str(64 << 20)),
        ("memory.memsw.limit_in_bytes", str(128 << 20)),
    ]


def test_v1_memory_unlimited_sets_swap_unlimited(v1_root: Path, v1_layout, recorder) -> None:
    make_v1_cgroup_files(v1_root, CID)
    open_cgroup(CID, v1_layout).update({"memory": {"limit": -1}})
    assert _mem_writes(recorder) == [("memory.memsw.limit_in_bytes", "-1"), ("memory.limit_in_bytes", "-1")]


def test_v1_swap_skipped_without_swap_accounting(v1_root: Path, v1_layout, recorder) -> None:
    dirs = make_v1_cgroup_files(v1_root, CID)
    (dirs["memory"] / "memory.memsw.limit_in_bytes").unlink()
    open_cgroup(CID, v1_layout).create({"memory": {"limit": 64 << 20, "swap": 128 << 20}})
    assert _mem_writes(recorder) == [("memory.limit_in_bytes", str(64 << 20))]


def test_write_error_names_the_file(v1_root: Path, v1_layout) -> None:
    dirs = make_v1_cgroup_files(v1_root, CID)
    (dirs["pids"] / "pids.max").unlink()
    with pytest.raises(OSError) as ei:
        open_cgroup(CID, v1_layout).create({"pids": {"limit": 5}})
    assert ei.value.filename == str(dirs["pids"] / "pids.max")
    assert "pids.max" in str(ei.value)


def test_unified_refused_on_v1(v1_root: Path, v1_layout) -> None:
    make_v1_cgroup_files(v1_root, CID)
    with pytest.raises(InvalidArgument):
        open_cgroup(CID, v1_layout).create({"unified": {"memory.high": "1G"}})


def test_missing_controller_for_limit(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    touch(root / "cpu", ["cgroup.procs"])
    cg = open_cgroup(CID, detect(root))
    with pytest.raises(Unsupported):
        cg.create({"pids": {"limit": 10}})


@dataclass
class Memory:
    limit: int | None = None
    swap: int | None = None
    disable_oom_killer: bool | None = None


@dataclass
class Pids:
    limit: int


@dataclass
class Resources:
    memory: Memory | None = None
    pids: Pids | None = None
    devices: list = field(default_factory=list)


def test_accepts_objects_with_snake_or_camel_names(v1_root: Path, v1_layout) -> None:
    dirs = make_v1_cgroup_files(v1_root, CID)
    open_cgroup(CID, v1_layout).create(Resources(memory=Memory(limit=1 << 26, disable_oom_killer=True), pids=Pids(9)))
    assert read(dirs["memory"] / "memory.limit_in_bytes") == str(1 << 26)
    assert read(dirs["memory"] / "memory.oom_control") == "1"
    assert read(dirs["pids"] / "pids.max") == "9"


def test_add_writes_every_hierarchy(v1_root: Path, v1_layout) -> None:
    dirs = make_v1_cgroup_files(v1_root, CID)
    cg = open_cgroup(CID, v1_layout)
    cg.create(None)
    cg.add(4242)
    for h, d in dirs.items():
        assert read(d / "cgroup.procs") == "4242", h
    assert cg.pids() == [4242]


def test_oom_killed_reads_oom_control(v1_root: Path, v1_layout) -> None:
    dirs = make_v1_cgroup_files(v1_root, CID)
    cg = open_cgroup(CID, v1_layout)
    (dirs["memory"] / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 0\n")
    assert not cg.oom_killed()
    (dirs["memory"] / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    assert cg.oom_killed()


def test_stats(v1_root: Path, v1_layout) -> None:
    dirs = make_v1_cgroup_files(v1_root, CID)
    (dirs["memory"] / "memory.usage_in_bytes").write_text("1000\n")
    (dirs["memory"] / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    (dirs["memory"] / "memory.stat").write_text("cache 10\ntotal_inactive_file 4\n")
    (dirs["cpuacct"] / "cpuacct.usage").write_text("123456789\n")
    (dirs["cpuacct"] / "cpuacct.usage_percpu").write_text("100 200 \n")
    (dirs["cpuacct"] / "cpuacct.stat").write_text("user 3\nsystem 1\n")
    (dirs["pids"] / "pids.current").write_text("3\n")
    (dirs["pids"] / "pids.max").write_text("max\n")
    (dirs["blkio"] / "blkio.throttle.io_service_bytes_recursive").write_text(
        "8:0 Read 4096\n8:0 Write 8192\n8:0 Total 12288\nTotal 12288\n")
    s = open_cgroup(CID, v1_layout).stats()
    assert s["memory"]["usage"] == 1000 and s["memory"]["limit"] is None
    assert s["memory"]["stats"]["total_inactive_file"] == 4
    assert s["cpu"]["usage_ns"] == 123456789 and s["cpu"]["percpu_ns"] == [100, 200]
    assert s["cpu"]["user_ns"] > s["cpu"]["system_ns"] > 0
    assert s["pids"] == {"current": 3, "limit": None}
    assert s["blkio"]["read_bytes"] == 4096 and s["blkio"]["write_bytes"] == 8192


def test_destroy_is_idempotent(v1_root: Path, v1_layout) -> None:
    cg = open_cgroup(CID, v1_layout)
    cg.create(None)
    (cg.paths()["pids"] / "child").mkdir()  # a cgroup the container made inside its own
    cg.destroy()
    cg.destroy()
    assert not any(d.exists() for d in cg.paths().values())


def test_accepts_oci_spec_structs(v1_root: Path, v1_layout, recorder) -> None:
    """The runtime passes berth.oci.spec.Resources (msgspec, camelCase attributes)."""
    spec = pytest.importorskip("berth.oci.spec")
    import msgspec

    resources = msgspec.convert({**DOCKER_DEFAULT, "memory": {"limit": 64 << 20, "swap": 128 << 20},
                                 "pids": {"limit": 100}, "cpu": {"quota": 50000, "period": 100000}},
                                spec.Resources)
    dirs = make_v1_cgroup_files(v1_root, CID)
    open_cgroup(CID, v1_layout).create(resources)
    assert read(dirs["memory"] / "memory.memsw.limit_in_bytes") == str(128 << 20)
    assert read(dirs["pids"] / "pids.max") == "100"
    assert read(dirs["cpu"] / "cpu.cfs_quota_us") == "50000"
    assert ("devices.deny", "c 10:229 rwm") in [(n, v) for _, n, v in recorder]
