"""HostConfig settings applied to a container's OCI spec after ``build_spec``: the PID, IPC
and UTS namespace modes (``--pid``, ``--ipc``, ``--uts``), ``--sysctl``, ``--ulimit`` and
``--oom-score-adj``, the cgroup settings build_spec leaves out (cpuset, memory reservation
and swappiness, ``--oom-kill-disable``, realtime CPU, ``--device``,
``--device-cgroup-rule``), the root's propagation under a shared bind, as dockerd's ``daemon/oci_linux.go`` sets them (pure, given a way to find
the pid of another running container).

Sysctls are checked as runc checks them before it creates anything (libcontainer
``validateSysctl``): only namespaced keys, and only when the container has that namespace.
"""

from __future__ import annotations

import os
import stat
from typing import Any, Callable

from berth.errors import Conflict, InvalidArgument
from berth.oci.spec import Device, DeviceCgroup, Memory, Namespace, Rlimit
from berth.schema.containers import HostConfig

class Refused(ValueError):
    """A setting the runtime refuses before creating anything (runc's words)."""


# (container id or name) -> (full id, init pid, IpcMode); raises NotFound
Lookup = Callable[[str], tuple[str, int, str]]

_NET_DEFAULTS = ("net.ipv4.ip_unprivileged_port_start", "net.ipv4.ping_group_range")
_IPC_SYSCTLS = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
                "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced")


def apply(spec: Any, hc: HostConfig, lookup: Lookup, ulimits: list[Any] | None = None,
          domainname: str = "") -> None:
    """Change ``spec`` (an oci.Spec) in place. ``ulimits``: the ones to set, when not just the
    container's (the daemon's defaults merged in). ``domainname`` (Config.Domainname) becomes
    the kernel.domainname sysctl, as dockerd sets it (an explicit --sysctl wins). Raises
    Conflict (a joined container is not running; an IPC donor's sharing is checked before, by
    pod_shm.ipc_apply) or Refused (a sysctl runc
    would refuse)."""
    namespaces = list(spec.linux.namespaces or [])
    namespaces = _mode(namespaces, "pid", hc.PidMode, "PID", lookup)
    namespaces = _mode(namespaces, "ipc", hc.IpcMode, "IPC", lookup)
    if hc.UTSMode == "host":
        namespaces = [n for n in namespaces if n.type != "uts"]
        spec.hostname = None
    spec.linux.namespaces = namespaces
    if domainname and any(n.type == "uts" and not n.path for n in namespaces):
        spec.linux.sysctl = {**(spec.linux.sysctl or {}), "kernel.domainname": domainname}
    if hc.NetworkMode.startswith("container:") and spec.linux.sysctl:
        # dockerd sets its unprivileged ports and ping range only in a network namespace of
        # the container's own (IsPrivate): a joined one keeps its owner's (a pod's sysctls)
        spec.linux.sysctl = {k: v for k, v in spec.linux.sysctl.items() if k not in _NET_DEFAULTS}
    if hc.Sysctls:
        kinds = {n.type for n in namespaces}
        for key in hc.Sysctls:
            check_sysctl(key, kinds)
        spec.linux.sysctl = {**(spec.linux.sysctl or {}), **hc.Sysctls}
    ulimits = hc.Ulimits if ulimits is None else ulimits
    if ulimits:
        spec.process.rlimits = _rlimits(spec.process.rlimits, ulimits)
    spec.process.oomScoreAdj = hc.OomScoreAdj
    resources(spec, hc)
    _devices(spec, hc)
    _root_propagation(spec)


def _root_propagation(spec: Any) -> None:
    """A shared bind needs a shared root for mounts made on it to reach the host (dockerd's
    and containerd's rule: then the root is ``rshared``; runc's default is ``rslave``)."""
    for m in spec.mounts or []:
        if m.type == "bind" and {"shared", "rshared"} & set(m.options or []):
            spec.linux.rootfsPropagation = "rshared"
            return


def resources(spec: Any, hc: HostConfig) -> None:
    """The cgroup settings of ``hc`` that build_spec does not set (also used by update)."""
    r = spec.linux.resources
    if r is None:
        return
    if r.cpu is not None:
        r.cpu.cpus = hc.CpusetCpus or None
        r.cpu.mems = hc.CpusetMems or None
        r.cpu.realtimePeriod = hc.CpuRealtimePeriod or None
        r.cpu.realtimeRuntime = hc.CpuRealtimeRuntime or None
    if r.memory is None:
        r.memory = Memory()
    r.memory.reservation = hc.MemoryReservation or None
    if hc.MemorySwappiness is not None and hc.MemorySwappiness >= 0:
        r.memory.swappiness = hc.MemorySwappiness
    if hc.OomKillDisable:
        r.memory.disableOOMKiller = True
    for rule in hc.DeviceCgroupRules or []:
        r.devices = [*(r.devices or []), device_cgroup_rule(rule)]


def device_cgroup_rule(rule: str) -> DeviceCgroup:
    """``c 1:3 mr`` / ``a *:* rwm`` (``--device-cgroup-rule``) -> an allow entry."""
    parts = rule.split()
    if len(parts) != 3 or parts[0] not in ("a", "b", "c") or ":" not in parts[1]:
        raise InvalidArgument(f"invalid device cgroup format '{rule}'")
    major, minor = (None if x == "*" else int(x) for x in parts[1].split(":", 1))
    return DeviceCgroup(allow=True, type=parts[0], major=major, minor=minor, access=parts[2])


_SKIP_DIRS = ("pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev")


def host_devices(root: str = "/dev") -> list[Device]:
    """Every device node under /dev, as runc's ``devices.HostDevices`` lists them for
    ``--privileged`` (not /dev/console, nor the pts, shm, mqueue and fd trees)."""
    out: list[Device] = []
    for dirpath, dirs, files in os.walk(root):
        if dirpath == root:
            dirs[:] = [x for x in dirs if x not in _SKIP_DIRS]
        for name in files:
            path = os.path.join(dirpath, name)
            if path == "/dev/console":
                continue
            try:
                st = os.lstat(path)
            except OSError:
                continue
            kind = "c" if stat.S_ISCHR(st.st_mode) else "b" if stat.S_ISBLK(st.st_mode) else ""
            if kind:
                out.append(Device(path=path, type=kind, major=os.major(st.st_rdev), minor=os.minor(st.st_rdev),
                                  fileMode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid))
    return out


def _devices(spec: Any, hc: HostConfig) -> None:
    """``--privileged``: every host device; ``--device /dev/x[:/dev/y[:rwm]]``: that host node
    made in the container, and allowed."""
    if hc.Privileged:
        have = {x.path for x in spec.linux.devices or []}
        spec.linux.devices = [*(spec.linux.devices or []), *(x for x in host_devices() if x.path not in have)]
    for d in hc.Devices or []:
        host = str(d.get("PathOnHost", "")) if isinstance(d, dict) else ""
        inside = str(d.get("PathInContainer") or host) if isinstance(d, dict) else ""
        perms = str(d.get("CgroupPermissions") or "rwm") if isinstance(d, dict) else "rwm"
        try:
            st = os.stat(host)
        except OSError as e:
            raise InvalidArgument(f'error gathering device information while adding custom device "{host}": '
                                  f"{os.strerror(e.errno or 0).lower()}") from None
        if stat.S_ISCHR(st.st_mode):
            kind = "c"
        elif stat.S_ISBLK(st.st_mode):
            kind = "b"
        else:
            raise InvalidArgument(f'error gathering device information while adding custom device "{host}": '
                                  "not a device node")
        major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
        node = Device(path=inside, type=kind, major=major, minor=minor, fileMode=stat.S_IMODE(st.st_mode),
                      uid=st.st_uid, gid=st.st_gid)
        spec.linux.devices = [x for x in spec.linux.devices or [] if x.path != inside] + [node]
        if spec.linux.resources is not None:
            rule = DeviceCgroup(allow=True, type=kind, major=major, minor=minor, access=perms)
            spec.linux.resources.devices = [*(spec.linux.resources.devices or []), rule]


def _mode(namespaces: list[Any], kind: str, mode: str, word: str, lookup: Lookup) -> list[Any]:
    if mode == "host":
        return [n for n in namespaces if n.type != kind]
    if not mode.startswith("container:"):
        return namespaces
    cid, pid, _ = lookup(mode.split(":", 1)[1])
    if not pid:
        raise Conflict(f"cannot join {word} of a non running container: {cid}")
    joined = Namespace(type=kind, path=f"/proc/{pid}/ns/{kind}")
    return [n for n in namespaces if n.type != kind] + [joined]


def check_sysctl(key: str, namespaces: set[str]) -> None:
    """runc's rules, in its words. ``namespaces``: the spec's namespace types (joined or new)."""
    if key in _IPC_SYSCTLS or key.startswith("fs.mqueue."):
        if "ipc" not in namespaces:
            raise Refused(f'sysctl "{key}" is not allowed in host ipc namespace')
        return
    if key.startswith("net."):
        if "network" not in namespaces:
            raise Refused(f'sysctl "{key}" not allowed in host network namespace')
        return
    if key in ("kernel.domainname", "kernel.hostname"):
        if "uts" not in namespaces:
            raise Refused(f'sysctl "{key}" is not allowed as it conflicts with the OCI "hostname" field')
        return
    raise Refused(f'sysctl "{key}" is not in a separate kernel namespace')


def _rlimits(current: list[Any] | None, ulimits: list[Any]) -> list[Any]:
    out = {r.type: r for r in current or []}
    for u in ulimits:
        name = str(u.get("Name", "")) if isinstance(u, dict) else ""
        if not name:
            continue
        t = f"RLIMIT_{name.upper()}"
        out[t] = Rlimit(type=t, soft=int(u.get("Soft", 0)), hard=int(u.get("Hard", 0)))
    return list(out.values())
