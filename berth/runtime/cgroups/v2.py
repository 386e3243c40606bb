"""cgroup v2: one directory in the unified hierarchy, controllers enabled top-down.

A controller's files (memory.max, pids.max, ...) exist in a cgroup only when the controller
is listed in the *parent's* cgroup.subtree_control, which in turn needs it in the grandparent's,
up to the root. Core files (cgroup.procs, cgroup.freeze, cgroup.kill, cgroup.events, cpu.stat)
always exist. Kernel doc: Documentation/admin-guide/cgroup-v2.rst.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
from pathlib import Path
from typing import Any

from berth.runtime.cgroups import _common as c

log = logging.getLogger(__name__)

# Enabled whenever the host offers them, even without a limit: `docker stats` reads them.
_STATS_CONTROLLERS = ("cpu", "io", "memory", "pids")


def _num(v: int) -> str:
    return "max" if v == -1 else str(v)


class V2Cgroup(c.Cgroup):
    version = 2

    def __init__(self, path: str, root: Path, rel: str) -> None:
        self.path = path
        self._root = str(root)
        self._dir = os.path.join(self._root, rel.lstrip("/"))

    def paths(self) -> dict[str, Path]:
        return {"": Path(self._dir)}

    # -- lifecycle --------------------------------------------------------------------

    def create(self, resources: Any = None) -> None:
        c.mkdirs(self._dir)
        self._enable_controllers(_required(resources))
        if resources is not None:
            self.update(resources)

    def _enable_controllers(self, required: set[str]) -> None:
        wanted = set(_STATS_CONTROLLERS) | required
        level = self._root
        rel_parts = os.path.relpath(self._dir, self._root).split(os.sep)
        for part in rel_parts:
            available = set((c.read_opt(level, "cgroup.controllers") or "").split())
            missing = required - available
            if missing:
                raise OSError(errno.ENOENT, f"cgroup v2 controller(s) {' '.join(sorted(missing))} not available",
                              f"{level}/cgroup.controllers")
            enabled = set((c.read_opt(level, "cgroup.subtree_control") or "").split())
            todo = sorted((wanted & available) - enabled)
            if todo:
                self._subtree_enable(level, todo, required)
            level = os.path.join(level, part)

    @staticmethod
    def _subtree_enable(level: str, todo: list[str], required: set[str]) -> None:
        try:
            c.write(level, "cgroup.subtree_control", " ".join("+" + x for x in todo))
            return
        except OSError:
            if len(todo) == 1 and todo[0] in required:
                raise
        # One at a time, so an optional controller the kernel refuses (e.g. EBUSY on a parent
        # that holds processes) does not block the others.
        for ctrl in todo:
            try:
                c.write(level, "cgroup.subtree_control", "+" + ctrl)
            except OSError as e:
                if ctrl in required:
                    raise
                log.debug("cgroup v2: optional controller not enabled: %s", e)

    def update(self, resources: Any) -> None:
        r, d = resources, self._dir
        self._set_memory(c.res(r, "memory"))
        self._set_cpu(c.res(r, "cpu"))
        pids = c.res(r, "pids", "limit")
        if pids is not None:
            c.write(d, "pids.max", "max" if pids <= 0 else str(pids))
        self._set_io(c.res(r, "blockIO"))
        for h in c.res(r, "hugepageLimits") or ():
            c.write(d, f"hugetlb.{c.res(h, 'pageSize')}.max", str(c.res(h, "limit")))
        if _nontrivial_devices(c.res(r, "devices")):
            # v2 has no devices.allow: device access is an eBPF program
            # (BPF_PROG_TYPE_CGROUP_DEVICE) attached to the cgroup. Not implemented yet.
            log.info("cgroup v2: device rules for %s not enforced (needs eBPF device filter)", self.path)
        unified = c.res(r, "unified") or {}
        for key, value in unified.items():
            if "/" in key or (key.startswith("cgroup.") and key not in ("cgroup.max.depth", "cgroup.max.descendants")):
                raise OSError(errno.EINVAL, f"linux.resources.unified: key {key!r} not allowed", f"{d}/{key}")
            c.write(d, key, str(value))

    def _set_memory(self, mem: Any) -> None:
        if mem is None:
            return
        d = self._dir
        limit = c.res(mem, "limit") or 0
        try:
            swap = c.v2_swap_max(c.res(mem, "swap"), limit)
        except ValueError as e:
            raise OSError(errno.EINVAL, str(e), f"{d}/memory.swap.max") from None
        if swap is not None:
            if c.exists(d, "memory.swap.max"):
                c.write(d, "memory.swap.max", _num(swap))
            else:
                log.debug("cgroup v2: no memory.swap.max (swap accounting off): swap limit skipped")
        if limit:
            c.write(d, "memory.max", _num(limit))
        reservation = c.res(mem, "reservation") or 0
        if reservation:
            c.write(d, "memory.low", _num(reservation))
        if c.res(mem, "disableOOMKiller"):
            log.info("cgroup v2 cannot disable the OOM killer: ignored for %s", self.path)

    def _set_cpu(self, cpu: Any) -> None:
        if cpu is None:
            return
        d = self._dir
        shares = c.res(cpu, "shares") or 0
        if shares:
            c.write(d, "cpu.weight", str(c.shares_to_weight(shares)))
        quota = c.res(cpu, "quota") or 0
        period = c.res(cpu, "period") or 0
        if quota or period:
            value = "max" if quota <= 0 else str(quota)
            if period:
                value += f" {period}"
            c.write(d, "cpu.max", value)
        idle = c.res(cpu, "idle")
        if idle is not None:
            c.write(d, "cpu.idle", str(idle))
        if c.res(cpu, "realtimeRuntime") or c.res(cpu, "realtimePeriod"):
            raise OSError(errno.EOPNOTSUPP, "realtime cpu limits are not supported on cgroup v2", f"{d}/cpu.max")
        cpus, mems = c.res(cpu, "cpus"), c.res(cpu, "mems")
        if cpus:
            c.write(d, "cpuset.cpus", cpus)
        if mems:
            c.write(d, "cpuset.mems", mems)

    def _set_io(self, bio: Any) -> None:
        if bio is None:
            return
        d = self._dir
        weight = c.res(bio, "weight") or 0
        if weight:
            if c.exists(d, "io.bfq.weight"):
                c.write(d, "io.bfq.weight", str(weight))
            else:
                c.write(d, "io.weight", str(c.blkio_weight_to_io_weight(weight)))
        for key, name in (("throttleReadBpsDevice", "rbps"), ("throttleWriteBpsDevice", "wbps"),
                          ("throttleReadIOPSDevice", "riops"), ("throttleWriteIOPSDevice", "wiops")):
            for dev in c.res(bio, key) or ():
                c.write(d, "io.max", f"{c.res(dev, 'major')}:{c.res(dev, 'minor')} {name}={c.res(dev, 'rate')}")

    def add(self, pid: int) -> None:
        c.write(self._dir, "cgroup.procs", str(pid))

    def pids(self) -> list[int]:
        return c.parse_procs(c.read_opt(self._dir, "cgroup.procs"))

    def oom_killed(self) -> bool:
        return c.read_keyed(self._dir, "memory.events").get("oom_kill", 0) > 0

    # -- freezer ----------------------------------------------------------------------

    def _events(self) -> dict[str, int]:
        return c.read_keyed(self._dir, "cgroup.events")

    def freeze(self, timeout: float = 10.0) -> None:
        c.write(self._dir, "cgroup.freeze", "1")
        c.wait_until(lambda: self._events().get("frozen") == 1, timeout, "freeze", f"{self._dir}/cgroup.events")

    def thaw(self) -> None:
        c.write(self._dir, "cgroup.freeze", "0")
        c.wait_until(lambda: self._events().get("frozen", 0) == 0, 10.0, "thaw", f"{self._dir}/cgroup.events")

    def kill_all(self, sig: int = signal.SIGKILL) -> None:
        if sig == signal.SIGKILL and c.exists(self._dir, "cgroup.kill"):
            c.write(self._dir, "cgroup.kill", "1")  # kernel >= 5.14: atomic, no fork race
            return
        c.signal_pids(self.pids(), sig)

    # -- stats ------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        d = self._dir
        out: dict[str, Any] = {}
        if c.exists(d, "memory.current"):
            peak = c.read_int(d, "memory.peak")  # kernel >= 5.19
            out["memory"] = {
                "usage": c.read_int(d, "memory.current"),
                "max_usage": peak,
                "limit": c.read_int(d, "memory.max"),
                "failcnt": c.read_keyed(d, "memory.events").get("max"),
                "stats": c.read_keyed(d, "memory.stat"),
            }
        st = c.read_keyed(d, "cpu.stat")  # core file: usage is there even without the cpu controller
        if st:
            out["cpu"] = {
                "usage_ns": st.get("usage_usec", 0) * 1000,
                "user_ns": st.get("user_usec", 0) * 1000,
                "system_ns": st.get("system_usec", 0) * 1000,
                "percpu_ns": [],  # v2 has no per-cpu usage
                "throttling": {
                    "periods": st.get("nr_periods", 0),
                    "throttled_periods": st.get("nr_throttled", 0),
                    "throttled_time_ns": st.get("throttled_usec", 0) * 1000,
                },
            }
        if c.exists(d, "pids.current"):
            out["pids"] = {"current": c.read_int(d, "pids.current"), "limit": c.read_int(d, "pids.max")}
        io = c.read_opt(d, "io.stat")
        if io is not None:
            out["blkio"] = _io_stats(io)
        return out

    def counters(self) -> dict[str, Any]:
        d = self._dir
        out: dict[str, Any] = {}
        usage = c.read_int(d, "memory.current")
        if usage is not None:
            out["memory"] = {"usage": usage, "limit": c.read_int(d, "memory.max")}
        st = c.read_keyed(d, "cpu.stat")
        if st:
            out["cpu"] = {"usage_ns": st.get("usage_usec", 0) * 1000, "user_ns": st.get("user_usec", 0) * 1000,
                          "system_ns": st.get("system_usec", 0) * 1000}
        pids = c.read_int(d, "pids.current")
        if pids is not None:
            out["pids"] = {"current": pids}
        io = c.read_opt(d, "io.stat")
        if io is not None:
            out["blkio"] = _io_stats(io)
        return out

    def destroy(self) -> None:
        c.rmdir_tree(self._dir)


def _required(resources: Any) -> set[str]:
    """Controllers that a requested limit cannot do without."""
    if resources is None:
        return set()
    need = set()
    mem = c.res(resources, "memory")
    if mem is not None and (c.res(mem, "limit") or c.res(mem, "swap") or c.res(mem, "reservation")):
        need.add("memory")
    cpu = c.res(resources, "cpu")
    if cpu is not None:
        if c.res(cpu, "shares") or c.res(cpu, "quota") or c.res(cpu, "period") or c.res(cpu, "idle") is not None:
            need.add("cpu")
        if c.res(cpu, "cpus") or c.res(cpu, "mems"):
            need.add("cpuset")
    if c.res(resources, "pids", "limit") is not None:
        need.add("pids")
    bio = c.res(resources, "blockIO")
    if bio is not None and any(c.res(bio, k) for k in ("weight", "throttleReadBpsDevice", "throttleWriteBpsDevice",
                                                        "throttleReadIOPSDevice", "throttleWriteIOPSDevice")):
        need.add("io")
    if c.res(resources, "hugepageLimits"):
        need.add("hugetlb")
    for key in c.res(resources, "unified") or {}:
        prefix = key.split(".", 1)[0]
        if prefix not in ("cgroup",):
            need.add(prefix)
    return need


def _nontrivial_devices(devices: Any) -> bool:
    """True unless the rules are empty or a single allow-all."""
    if not devices:
        return False
    if len(devices) == 1 and c.res(devices[0], "allow") and (c.res(devices[0], "type") or "a") == "a":
        return False
    return True


def _io_stats(text: str) -> dict[str, Any]:
    entries = []
    read = write = 0
    for line in text.splitlines():
        dev, *fields = line.split()
        if ":" not in dev:
            continue
        major, minor = (int(x) for x in dev.split(":"))
        kv = dict(f.split("=", 1) for f in fields if "=" in f)
        rb, wb = int(kv.get("rbytes", 0)), int(kv.get("wbytes", 0))
        read += rb
        write += wb
        entries.append({"major": major, "minor": minor, "op": "read", "value": rb})
        entries.append({"major": major, "minor": minor, "op": "write", "value": wb})
    return {"read_bytes": read, "write_bytes": write, "io_service_bytes_recursive": entries}
