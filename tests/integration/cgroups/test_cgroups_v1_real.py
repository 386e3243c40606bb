"""cgroup v1 on the real kernel: limits are enforced, freezer works, everything is cleaned up.

Runs when this host's /sys/fs/cgroup is v1 (or hybrid); skipped on pure v2 hosts.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from berth.runtime.cgroups import detect
from cgroup_child import Child, root_only, scratch_cgroup, spin

pytestmark = root_only


@pytest.fixture(scope="module")
def layout():
    lay = detect()
    if lay.version != 1:
        pytest.skip("host is cgroup v2")
    return lay


def _fork_until_eagain(child: Child) -> str:
    r, w = os.pipe()
    n = 0
    kids = []
    while n < 1000:
        try:
            pid = os.fork()
        except BlockingIOError:  # EAGAIN: pids.max reached
            break
        if pid == 0:
            os.close(w)
            os.read(r, 1)  # hold the slot until the parent closes the pipe
            os._exit(0)
        kids.append(pid)
        n += 1
    os.close(w)
    for pid in kids:
        os.waitpid(pid, 0)
    return f"forked {n}"


def test_pids_limit_stops_fork_bomb(layout) -> None:
    with scratch_cgroup(layout, {"pids": {"limit": 10}}) as cg:
        assert (cg.paths()["pids"] / "pids.max").read_text().strip() == "10"
        child = Child(_fork_until_eagain)
        try:
            cg.add(child.pid)
            child.go()
            # the child itself is one of the 10 tasks
            assert child.result() == "forked 9"
            assert os.WEXITSTATUS(child.wait()) == 0
        finally:
            child.cleanup()


def _allocate(child: Child) -> str:
    chunks = []
    for _ in range(512):
        chunks.append(b"x" * (1 << 20))  # written, so really charged
    return "survived 512MiB"


def test_memory_limit_oom_kills(layout) -> None:
    limit = 32 << 20
    with scratch_cgroup(layout, {"memory": {"limit": limit, "swap": limit}}) as cg:
        assert int((cg.paths()["memory"] / "memory.limit_in_bytes").read_text()) == limit
        assert not cg.oom_killed()
        child = Child(_allocate)
        try:
            cg.add(child.pid)
            child.go()
            status = child.wait()
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
            assert cg.oom_killed()
            assert cg.stats()["memory"]["max_usage"] >= limit * 0.9
        finally:
            child.cleanup()


def test_add_joins_every_hierarchy(layout) -> None:
    with scratch_cgroup(layout) as cg:
        child = Child(spin)
        try:
            cg.add(child.pid)
            assert cg.pids() == [child.pid]
            lines = open(f"/proc/{child.pid}/cgroup").read().splitlines()
            joined = {ln.split(":")[1]: ln.split(":", 2)[2] for ln in lines}
            expected = "/" + cg.path.lstrip("/")
            for key in layout.hierarchies:
                line = next(v for k, v in joined.items() if key in k.split(","))
                assert line == expected, key
        finally:
            child.cleanup()


def test_freeze_thaw(layout) -> None:
    with scratch_cgroup(layout) as cg:
        child = Child(spin)
        try:
            cg.add(child.pid)
            child.go()
            time.sleep(0.05)
            assert child.count() > 0
            cg.freeze()
            assert (cg.paths()["freezer"] / "freezer.state").read_text().strip() == "FROZEN"
            a = child.count()
            time.sleep(0.1)
            assert child.count() == a, "counter moved while frozen"
            cg.thaw()
            time.sleep(0.05)
            assert child.count() > a
        finally:
            child.cleanup()


def test_kill_all_and_destroy(layout) -> None:
    with scratch_cgroup(layout) as cg:
        kids = [Child(spin) for _ in range(3)]
        try:
            for k in kids:
                cg.add(k.pid)
                k.go()
            assert sorted(cg.pids()) == sorted(k.pid for k in kids)
            cg.kill_all(signal.SIGTERM)
            for k in kids:
                status = k.wait()
                assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM
            assert cg.pids() == []
            # the freezer was thawed again after the kill
            assert (cg.paths()["freezer"] / "freezer.state").read_text().strip() == "THAWED"
        finally:
            for k in kids:
                k.cleanup()
        cg.destroy()
        assert not any(p.exists() for p in cg.paths().values())
        cg.destroy()  # idempotent


def test_stats_real(layout) -> None:
    with scratch_cgroup(layout, {"pids": {"limit": 50}, "memory": {"limit": 256 << 20}}) as cg:
        child = Child(spin)
        try:
            cg.add(child.pid)
            child.go()
            time.sleep(0.1)
            s = cg.stats()
            assert s["cpu"]["usage_ns"] > 10_000_000
            assert len(s["cpu"]["percpu_ns"]) == os.cpu_count()
            assert s["pids"] == {"current": 1, "limit": 50}
            assert s["memory"]["limit"] == 256 << 20 and s["memory"]["usage"] > 0
            assert "read_bytes" in s["blkio"]
        finally:
            child.cleanup()


def test_cpu_and_devices_real(layout) -> None:
    resources = {
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
        "devices": [
            {"allow": False, "access": "rwm"},
            {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
            {"allow": True, "type": "c", "major": 136, "minor": -1, "access": "rwm"},
        ],
    }
    with scratch_cgroup(layout, resources) as cg:
        p = cg.paths()
        assert (p["cpu"] / "cpu.shares").read_text().strip() == "512"
        assert (p["cpu"] / "cpu.cfs_quota_us").read_text().strip() == "50000"
        assert (p["cpuset"] / "cpuset.cpus").read_text().strip() == "0"
        assert (p["devices"] / "devices.list").read_text().split("\n")[:2] == ["c 1:3 rwm", "c 136:* rwm"]

        def open_devices(child: Child) -> str:
            out = []
            for dev in ("/dev/null", "/dev/zero"):
                try:
                    os.close(os.open(dev, os.O_RDONLY))
                    out.append(f"{dev}=ok")
                except OSError as e:
                    out.append(f"{dev}={e.errno}")
            return " ".join(out)

        child = Child(open_devices)
        try:
            cg.add(child.pid)
            child.go()
            assert child.result() == "/dev/null=ok /dev/zero=1"  # EPERM from the device cgroup
        finally:
            child.cleanup()


def test_update_lowers_and_raises_memory(layout) -> None:
    with scratch_cgroup(layout, {"memory": {"limit": 64 << 20, "swap": 128 << 20}}) as cg:
        mem = cg.paths()["memory"]
        has_memsw = (mem / "memory.memsw.limit_in_bytes").exists()
        cg.update({"memory": {"limit": 512 << 20, "swap": 1 << 30}})  # raise: memsw first
        assert int((mem / "memory.limit_in_bytes").read_text()) == 512 << 20
        cg.update({"memory": {"limit": 32 << 20, "swap": 64 << 20}})  # lower: limit first
        assert int((mem / "memory.limit_in_bytes").read_text()) == 32 << 20
        if has_memsw:
            assert int((mem / "memory.memsw.limit_in_bytes").read_text()) == 64 << 20


def test_create_time(layout) -> None:
    docker_default = {
        "devices": [{"allow": False, "access": "rwm"}] + [
            {"allow": True, "type": "c", "major": 1, "minor": m, "access": "rwm"} for m in (5, 3, 9, 8)
        ] + [{"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"}],
        "memory": {"disableOOMKiller": False}, "cpu": {"shares": 0}, "blockIO": {"weight": 0},
    }
    with scratch_cgroup(layout) as parent:
        from berth.runtime.cgroups import open_cgroup

        times = []
        for i in range(5):
            cg = open_cgroup(f"{parent.path}/x{i}", layout)
            t = time.perf_counter()
            cg.create(docker_default)
            times.append(time.perf_counter() - t)
            cg.destroy()
        print(f"\ncgroup v1 create (docker default resources): best {min(times) * 1e3:.2f} ms")
        assert min(times) < 0.02
