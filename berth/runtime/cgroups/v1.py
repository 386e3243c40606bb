"""cgroup v1: one directory per mounted hierarchy; limits written file by file, as runc's fs driver.

Kernel docs: Documentation/admin-guide/cgroup-v1/{memory,cpusets,devices,freezer-subsystem,pids}.rst
"""

from __future__ import annotations

import errno
import logging
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from berth.errors import InvalidArgument, Unsupported
from berth.runtime.cgroups import _common as c

if TYPE_CHECKING:
    from berth.runtime.cgroups import Layout

log = logging.getLogger(__name__)


class V1Cgroup(c.Cgroup):
    version = 1

    def __init__(self, path: str, layout: Layout, rels: dict[str, str]) -> None:
        self.path = path
        self._layout = layout
        # hierarchy key -> dir; co-mounted controllers map to the same dir
        self._dirs = {k: os.path.join(str(layout.hierarchies[k]), rel.lstrip("/")) for k, rel in rels.items()}
        self._unique = list(dict.fromkeys(self._dirs.values()))

    def paths(self) -> dict[str, Path]:
        return {k: Path(d) for k, d in self._dirs.items()}

    def _dir(self, ctrl: str) -> str | None:
        return self._dirs.get(ctrl)

    def _need(self, ctrl: str, what: str) -> str:
        d = self._dirs.get(ctrl)
        if d is None:
            raise Unsupported(f"cgroup v1 controller {ctrl} is not mounted: cannot set {what}")
        return d

    # -- lifecycle --------------------------------------------------------------------

    def create(self, resources: Any = None) -> None:
        for d in self._unique:
            c.mkdirs(d)
        cpuset = self._dirs.get("cpuset")
        if cpuset is not None:
            self._init_cpuset(cpuset)
        if resources is not None:
            self.update(resources)

    def _init_cpuset(self, d: str) -> None:
        # A new cpuset cgroup starts with empty cpus/mems and refuses tasks (ENOSPC) until
        # they are set: copy them down from the nearest parent, level by level (runc); then
        # let the kernel do it for the next container (the parent's cgroup.clone_children:
        # it copies both at mkdir), which leaves one read here instead of 6 opens and 2 writes.
        if (c.read_opt(d, "cpuset.cpus") or "").strip():
            return
        mount = str(self._layout.hierarchies["cpuset"])
        levels = []
        copied = False
        cur = d
        while cur != mount and cur.startswith(mount):
            levels.append(cur)
            cur = os.path.dirname(cur)
        for level in reversed(levels):
            parent = os.path.dirname(level)
            for name in ("cpuset.cpus", "cpuset.mems"):
                mine = c.read_opt(level, name)
                if mine is None or mine.strip():
                    continue
                value = (c.read_opt(parent, name) or "").strip()
                if value:
                    c.write(level, name, value)
                    copied = True
        parent = os.path.dirname(d)
        if copied and parent != mount and parent.startswith(mount):  # never the root: not berth's
            try:
                c.write(parent, "cgroup.clone_children", "1")
            except OSError:
                pass  # the copy above goes on working

    def update(self, resources: Any) -> None:
        r = resources
        if c.res(r, "unified"):
            raise InvalidArgument("linux.resources.unified needs cgroup v2")
        self._set_memory(r)
        self._set_cpu(r)
        pids = c.res(r, "pids", "limit")
        if pids is not None:
            c.write(self._need("pids", "pids limit"), "pids.max", "max" if pids <= 0 else str(pids))
        self._set_devices(c.res(r, "devices"))
        self._set_blkio(c.res(r, "blockIO"))
        for h in c.res(r, "hugepageLimits") or ():
            d = self._need("hugetlb", "hugepage limits")
            c.write(d, f"hugetlb.{c.res(h, 'pageSize')}.limit_in_bytes", str(c.res(h, "limit")))

    def _set_memory(self, r: Any) -> None:
        mem = c.res(r, "memory")
        if mem is None:
            return
        limit = c.res(mem, "limit") or 0
        swap = c.res(mem, "swap") or 0
        reservation = c.res(mem, "reservation") or 0
        no_oom = bool(c.res(mem, "disableOOMKiller"))
        swappiness = c.res(mem, "swappiness")
        if not (limit or swap or reservation or no_oom or swappiness is not None):
            return
        d = self._need("memory", "memory limits")
        has_memsw = c.exists(d, "memory.memsw.limit_in_bytes")
        if limit == -1 and swap == 0 and has_memsw:
            swap = -1
        if not has_memsw:
            swap = 0  # swap accounting off: the kernel has no memsw file; Docker then ignores swap
        if limit and swap:
            # The kernel insists memsw >= limit at every moment: when raising, write memsw first;
            # when lowering, write the limit first (runc setMemoryAndSwap).
            current = c.read_int(d, "memory.limit_in_bytes")
            if swap == -1 or (current is not None and current < swap):
                c.write(d, "memory.memsw.limit_in_bytes", str(swap))
                c.write(d, "memory.limit_in_bytes", str(limit))
                swap = limit = 0
        if limit:
            c.write(d, "memory.limit_in_bytes", str(limit))
        if swap:
            c.write(d, "memory.memsw.limit_in_bytes", str(swap))
        if reservation:
            c.write(d, "memory.soft_limit_in_bytes", str(reservation))
        if no_oom:
            c.write(d, "memory.oom_control", "1")
        if swappiness is not None and swappiness >= 0:
            if swappiness > 100:
                raise InvalidArgument(f"invalid memory swappiness {swappiness}: must be 0..100")
            c.write(d, "memory.swappiness", str(swappiness))

    def _set_cpu(self, r: Any) -> None:
        cpu = c.res(r, "cpu")
        if cpu is None:
            return
        shares = c.res(cpu, "shares") or 0
        quota = c.res(cpu, "quota") or 0
        period = c.res(cpu, "period") or 0
        if shares or quota or period:
            d = self._need("cpu", "cpu shares/quota")
            if shares:
                c.write(d, "cpu.shares", str(shares))
            retry_period = False
            if period:
                try:
                    c.write(d, "cpu.cfs_period_us", str(period))
                except OSError as e:
                    # A smaller period can be refused (EINVAL) while the old quota/period
                    # ratio exceeds the parent's; it succeeds once the quota is written.
                    if e.errno != errno.EINVAL or not quota:
                        raise
                    retry_period = True
            if quota:
                c.write(d, "cpu.cfs_quota_us", str(quota))
                if retry_period:
                    c.write(d, "cpu.cfs_period_us", str(period))
        idle = c.res(cpu, "idle")
        if idle is not None:
            c.write(self._need("cpu", "cpu idle"), "cpu.idle", str(idle))
        rt_period = c.res(cpu, "realtimePeriod") or 0
        rt_runtime = c.res(cpu, "realtimeRuntime") or 0
        if rt_period:
            c.write(self._need("cpu", "realtime period"), "cpu.rt_period_us", str(rt_period))
        if rt_runtime:
            c.write(self._need("cpu", "realtime runtime"), "cpu.rt_runtime_us", str(rt_runtime))
        cpus, mems = c.res(cpu, "cpus"), c.res(cpu, "mems")
        if cpus:
            c.write(self._need("cpuset", "cpus"), "cpuset.cpus", cpus)
        if mems:
            c.write(self._need("cpuset", "mems"), "cpuset.mems", mems)

    def _set_devices(self, devices: Any) -> None:
        if not devices:
            return
        d = self._dirs.get("devices")
        if d is None:
            log.warning("cgroup v1 devices controller not mounted: device rules for %s not applied", self.path)
            return
        for dev in devices:
            c.write(d, "devices.allow" if c.res(dev, "allow") else "devices.deny", c.device_rule_line(dev))

    def _set_blkio(self, bio: Any) -> None:
        if bio is None:
            return
        weight = c.res(bio, "weight") or 0
        throttles = [
            (key, f"blkio.throttle.{name}_device", c.res(bio, key))
            for key, name in (("throttleReadBpsDevice", "read_bps"), ("throttleWriteBpsDevice", "write_bps"),
                              ("throttleReadIOPSDevice", "read_iops"), ("throttleWriteIOPSDevice", "write_iops"))
        ]
        if not weight and not any(t[2] for t in throttles):
            return
        d = self._need("blkio", "block IO limits")
        if weight:
            name = "blkio.weight" if c.exists(d, "blkio.weight") else "blkio.bfq.weight"
            c.write(d, name, str(weight))
        for _, name, devs in throttles:
            for dev in devs or ():
                c.write(d, name, f"{c.res(dev, 'major')}:{c.res(dev, 'minor')} {c.res(dev, 'rate')}")

    def add(self, pid: int) -> None:
        for d in self._unique:
            c.write(d, "cgroup.procs", str(pid))

    def _procs_dir(self) -> str:
        for key in ("pids", "freezer", "memory", "cpu", "name=systemd"):
            if key in self._dirs:
                return self._dirs[key]
        return self._unique[0]

    def pids(self) -> list[int]:
        return c.parse_procs(c.read_opt(self._procs_dir(), "cgroup.procs"))

    def oom_killed(self) -> bool:
        d = self._dirs.get("memory")
        if d is None:
            return False
        ctl = c.read_keyed(d, "memory.oom_control")
        return ctl.get("oom_kill", 0) > 0 or ctl.get("under_oom", 0) > 0

    # -- freezer ----------------------------------------------------------------------

    def freeze(self, timeout: float = 10.0) -> None:
        d = self._need("freezer", "freeze")
        c.write(d, "freezer.state", "FROZEN")
        tries = 0

        def frozen() -> bool:
            nonlocal tries
            tries += 1
            state = (c.read_opt(d, "freezer.state") or "").strip()
            if state == "FREEZING" and tries % 50 == 0:
                c.write(d, "freezer.state", "FROZEN")  # nudge tasks that were busy in fork
            return state == "FROZEN"

        try:
            c.wait_until(frozen, timeout, "freeze", f"{d}/freezer.state")
        except TimeoutError:
            c.write(d, "freezer.state", "THAWED")
            raise

    def thaw(self) -> None:
        d = self._need("freezer", "thaw")
        c.write(d, "freezer.state", "THAWED")
        c.wait_until(lambda: (c.read_opt(d, "freezer.state") or "").strip() == "THAWED", 10.0, "thaw",
                     f"{d}/freezer.state")

    def kill_all(self, sig: int = signal.SIGKILL) -> None:
        # Freeze first so nothing can fork between reading cgroup.procs and signalling (runc).
        frozen = False
        if "freezer" in self._dirs and os.path.isdir(self._dirs["freezer"]):
            try:
                self.freeze(timeout=2.0)
                frozen = True
            except OSError as e:
                log.warning("kill %s: freeze failed, signalling unfrozen: %s", self.path, e)
        try:
            c.signal_pids(self.pids(), sig)
        finally:
            if frozen:
                self.thaw()

    # -- stats ------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        d = self._dirs.get("memory")
        if d is not None:
            out["memory"] = {
                "usage": c.read_int(d, "memory.usage_in_bytes"),
                "max_usage": c.read_int(d, "memory.max_usage_in_bytes"),
                "limit": c.read_int(d, "memory.limit_in_bytes"),
                "failcnt": c.read_int(d, "memory.failcnt"),
                "stats": c.read_keyed(d, "memory.stat"),
            }
        d = self._dirs.get("cpuacct")
        cpu: dict[str, Any] = {}
        if d is not None:
            hz = os.sysconf("SC_CLK_TCK")
            ticks = c.read_keyed(d, "cpuacct.stat")
            cpu["usage_ns"] = c.read_int(d, "cpuacct.usage")
            cpu["user_ns"] = ticks.get("user", 0) * 1_000_000_000 // hz
            cpu["system_ns"] = ticks.get("system", 0) * 1_000_000_000 // hz
            cpu["percpu_ns"] = [int(x) for x in (c.read_opt(d, "cpuacct.usage_percpu") or "").split()]
        d = self._dirs.get("cpu")
        if d is not None:
            st = c.read_keyed(d, "cpu.stat")
            cpu["throttling"] = {
                "periods": st.get("nr_periods", 0),
                "throttled_periods": st.get("nr_throttled", 0),
                "throttled_time_ns": st.get("throttled_time", 0),
            }
        if cpu:
            out["cpu"] = cpu
        d = self._dirs.get("pids")
        if d is not None:
            out["pids"] = {"current": c.read_int(d, "pids.current"), "limit": c.read_int(d, "pids.max")}
        d = self._dirs.get("blkio")
        if d is not None:
            out["blkio"] = _blkio_stats(d)
        return out

    def counters(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        d = self._dirs.get("memory")
        if d is not None:
            out["memory"] = {"usage": c.read_int(d, "memory.usage_in_bytes"),
                             "limit": c.read_int(d, "memory.limit_in_bytes")}
        d = self._dirs.get("cpuacct")
        if d is not None:
            hz = os.sysconf("SC_CLK_TCK")
            ticks = c.read_keyed(d, "cpuacct.stat")
            out["cpu"] = {"usage_ns": c.read_int(d, "cpuacct.usage"),
                          "user_ns": ticks.get("user", 0) * 1_000_000_000 // hz,
                          "system_ns": ticks.get("system", 0) * 1_000_000_000 // hz}
        d = self._dirs.get("pids")
        if d is not None:
            out["pids"] = {"current": c.read_int(d, "pids.current")}
        d = self._dirs.get("blkio")
        if d is not None:
            out["blkio"] = _blkio_stats(d)
        return out

    def destroy(self) -> None:
        for d in self._unique:
            c.rmdir_tree(d)


def _blkio_stats(d: str) -> dict[str, Any]:
    text = c.read_opt(d, "blkio.throttle.io_service_bytes_recursive")
    if text is None:
        text = c.read_opt(d, "blkio.io_service_bytes_recursive") or ""
    entries = []
    read = write = 0
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 3 or ":" not in parts[0]:
            continue
        major, minor = (int(x) for x in parts[0].split(":"))
        value = int(parts[2])
        entries.append({"major": major, "minor": minor, "op": parts[1], "value": value})
        if parts[1] == "Read":
            read += value
        elif parts[1] == "Write":
            write += value
    return {"read_bytes": read, "write_bytes": write, "io_service_bytes_recursive": entries}
