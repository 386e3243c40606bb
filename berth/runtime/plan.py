"""Spec -> plan: everything the container init will do, decided before fork (pure).

The parent (``container.create``) gathers host facts once (``HostInfo``), compiles seccomp,
then calls ``build_plan``. The init (``init.run``) only applies the resulting ``Plan``: it
parses nothing and decides nothing, except the few things that can only be known inside the
container (a user *name*, the PATH lookup, the cgroup paths the init itself was put in).
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable
from dataclasses import dataclass

from berth.linux.mount import MountFlags as MF
from berth.linux.rlimit import Resource
from berth.linux.sched import CloneFlags
from berth.oci import spec as oci
from berth.runtime import caps as capmod
from berth.runtime.defaults import ANNOTATION_GROUPS, ANNOTATION_IDMAP, ANNOTATION_OVERLAY, ANNOTATION_USER
from berth.runtime.userns import IdMaps


class PlanError(ValueError):
    """The spec asks for something this runtime cannot do."""


NAMESPACE_FLAGS: dict[str, int] = {
    "pid": CloneFlags.NEWPID, "network": CloneFlags.NEWNET, "mount": CloneFlags.NEWNS,
    "ipc": CloneFlags.NEWIPC, "uts": CloneFlags.NEWUTS, "cgroup": CloneFlags.NEWCGROUP,
    "user": CloneFlags.NEWUSER, "time": CloneFlags.NEWTIME,
}
_PAGE_SIZE = 4096  # mount(2) copies at most one page of data
# These take effect for children only, so the parent enters them around fork().
FORK_NAMESPACES = CloneFlags.NEWPID | CloneFlags.NEWTIME

_FLAG_OPTIONS: dict[str, tuple[bool, int]] = {
    "ro": (True, MF.RDONLY), "rw": (False, MF.RDONLY),
    "nosuid": (True, MF.NOSUID), "suid": (False, MF.NOSUID),
    "nodev": (True, MF.NODEV), "dev": (False, MF.NODEV),
    "noexec": (True, MF.NOEXEC), "exec": (False, MF.NOEXEC),
    "sync": (True, MF.SYNCHRONOUS), "async": (False, MF.SYNCHRONOUS),
    "dirsync": (True, MF.DIRSYNC), "remount": (True, MF.REMOUNT),
    "mand": (True, MF.MANDLOCK), "nomand": (False, MF.MANDLOCK),
    "atime": (False, MF.NOATIME), "noatime": (True, MF.NOATIME),
    "diratime": (False, MF.NODIRATIME), "nodiratime": (True, MF.NODIRATIME),
    "relatime": (True, MF.RELATIME), "norelatime": (False, MF.RELATIME),
    "strictatime": (True, MF.STRICTATIME), "nostrictatime": (False, MF.STRICTATIME),
    "bind": (True, MF.BIND), "rbind": (True, MF.BIND | MF.REC),
    "nosymfollow": (True, MF.NOSYMFOLLOW), "defaults": (False, MF.NONE),
}
_PROPAGATION: dict[str, int] = {
    "private": MF.PRIVATE, "rprivate": MF.PRIVATE | MF.REC,
    "shared": MF.SHARED, "rshared": MF.SHARED | MF.REC,
    "slave": MF.SLAVE, "rslave": MF.SLAVE | MF.REC,
    "unbindable": MF.UNBINDABLE, "runbindable": MF.UNBINDABLE | MF.REC,
}


class MountKind(enum.Enum):
    FS = "fs"          # mount(source, dest, type, flags, data)
    BIND = "bind"      # bind, then remount for flags, then propagation
    CGROUP = "cgroup"  # the /sys/fs/cgroup tree (see CgroupHierarchy)


@dataclass(frozen=True)
class MountStep:
    kind: MountKind
    dest: str                 # absolute, inside the container
    source: str | None
    fstype: str | None
    flags: int
    data: str | None
    propagation: int = 0
    source_is_dir: bool = True  # binds of a file need a file as mount point
    idmap: bool = False  # a bind seen through the container's user namespace (option ``idmap``)


@dataclass(frozen=True)
class CgroupHierarchy:
    """One host cgroup mount under /sys/fs/cgroup. ``key`` is its controller field in
    /proc/<pid>/cgroup (``cpu``, ``name=systemd``, ``""`` for cgroup2)."""

    mountpoint: str
    root: str
    fstype: str
    key: str


@dataclass(frozen=True)
class DeviceNode:
    path: str
    kind: str        # "c" | "b" | "p"
    major: int
    minor: int
    mode: int
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True)
class CapPlan:
    bounding: int
    effective: int
    permitted: int
    inheritable: int
    ambient: int
    last_cap: int
    drop_if_not_root: bool  # a user name resolved in the init: Docker's non-root rule


@dataclass(frozen=True)
class HostInfo:
    """Facts about the host the plan depends on; gathered once per process."""

    cap_last_cap: int
    bounding: int            # our own bounding set: --privileged cannot exceed it
    permitted: int
    cgroups: tuple[CgroupHierarchy, ...]
    cgroup2_root: bool       # /sys/fs/cgroup itself is cgroup2 (a pure v2 host)
    has_kcore: bool


@dataclass(frozen=True)
class Plan:
    rootfs: str
    overlay: str | None
    root_propagation: int
    root_readonly: bool
    prefork_unshare: int
    prefork_join: tuple[tuple[str, int], ...]
    unshare: int
    join: tuple[tuple[str, int], ...]
    hostname: str | None
    loopback: bool
    mounts: tuple[MountStep, ...]
    cgroups: tuple[CgroupHierarchy, ...]
    cgroup2_root: bool
    cgroupns: bool
    dev_tmpfs: bool
    devices: tuple[DeviceNode, ...]
    symlinks: tuple[tuple[str, str], ...]   # (target, link path)
    console: str | None
    masked: tuple[str, ...]
    readonly: tuple[str, ...]
    sysctls: tuple[tuple[str, str], ...]    # (/proc/sys path, value)
    rlimits: tuple[tuple[int, int, int], ...]
    oom_score_adj: int | None
    uid: int
    gid: int
    additional_gids: tuple[int, ...]
    resolve_user: str | None
    cwd: str
    args: tuple[str, ...]
    env: tuple[str, ...]
    terminal: bool
    umask: int
    caps: CapPlan | None
    no_new_privs: bool
    seccomp_bpf: bytes | None
    seccomp_early: bool  # without no_new_privs the filter needs CAP_SYS_ADMIN: load it first
    group_add: tuple[str, ...] = ()  # --group-add names/gids the init resolves in /etc/group
    # A user namespace (runtime/userns.py): its maps; the trees the parent opens (open_tree)
    # as host root, each (source, idmapped): the image's directory (idmapped), then every bind's
    # source in order (idmapped when asked), since the container's root may not reach them;
    # where the image's is attached before the overlay is mounted (its lowerdirs are under it).
    userns: IdMaps | None = None
    userns_path: str | None = None  # join this user namespace (another container's: same maps)
    userns_trees: tuple[tuple[str, bool], ...] = ()
    idmap_lower: str | None = None


def parse_mount_options(options: list[str] | None) -> tuple[int, int, str | None]:
    """OCI mount options -> (flags, propagation flags, data)."""
    flags, prop, data = MF.NONE, MF.NONE, []
    for opt in options or ():
        if opt in _FLAG_OPTIONS:
            on, bit = _FLAG_OPTIONS[opt]
            flags = flags | bit if on else flags & ~bit
        elif opt in _PROPAGATION:
            prop |= _PROPAGATION[opt]
        else:
            data.append(opt)
    return int(flags), int(prop), ",".join(data) or None


def _mount_step(m: oci.Mount, is_dir: Callable[[str], bool]) -> MountStep:
    flags, prop, data = parse_mount_options(m.options)
    if m.type == "bind" or flags & MF.BIND:
        src = m.source or ""
        opts = (data or "").split(",")
        idmapped = "idmap" in opts
        if idmapped:
            data = ",".join(o for o in opts if o != "idmap") or None
        return MountStep(MountKind.BIND, m.destination, src, None, flags | MF.BIND, data, prop,
                         source_is_dir=is_dir(src), idmap=idmapped)
    if m.type == "cgroup" or m.type == "cgroup2":
        return MountStep(MountKind.CGROUP, m.destination, m.source, m.type, flags, data, prop)
    return MountStep(MountKind.FS, m.destination, m.source, m.type, flags, data, prop)


_DEFAULT_DEVICES = (
    DeviceNode("/dev/null", "c", 1, 3, 0o666), DeviceNode("/dev/zero", "c", 1, 5, 0o666),
    DeviceNode("/dev/full", "c", 1, 7, 0o666), DeviceNode("/dev/random", "c", 1, 8, 0o666),
    DeviceNode("/dev/urandom", "c", 1, 9, 0o666), DeviceNode("/dev/tty", "c", 5, 0, 0o666),
)


def _devices(spec_devices: list[oci.Device] | None, dev_tmpfs: bool) -> tuple[DeviceNode, ...]:
    out = list(_DEFAULT_DEVICES) if dev_tmpfs else []
    for d in spec_devices or ():
        node = DeviceNode(d.path, "c" if d.type == "u" else d.type, d.major, d.minor,
                          d.fileMode if d.fileMode is not None else 0o666, d.uid or 0, d.gid or 0)
        out = [n for n in out if n.path != node.path] + [node]
    return tuple(out)


def _namespaces(spec: oci.Spec) -> tuple[int, tuple[tuple[str, int], ...], int, tuple[tuple[str, int], ...]]:
    pre_unshare, unshare = 0, 0
    pre_join: list[tuple[str, int]] = []
    join: list[tuple[str, int]] = []
    userns = _id_maps(spec) is not None
    for ns in (spec.linux.namespaces if spec.linux else None) or ():
        flag = NAMESPACE_FLAGS.get(ns.type)
        if flag is None:
            raise PlanError(f"unknown namespace type {ns.type!r}")
        if flag == CloneFlags.NEWUSER:
            continue  # see _id_maps
        # In a user namespace the init unshares pid and time itself, then forks PID 1 (init.py).
        prefork = bool(flag & FORK_NAMESPACES) and not (userns and not ns.path)
        if ns.path:
            (pre_join if prefork else join).append((ns.path, int(flag)))
        elif prefork:
            pre_unshare |= flag
        else:
            unshare |= flag
    return pre_unshare, tuple(pre_join), unshare, tuple(join)


def _id_maps(spec: oci.Spec) -> IdMaps | None:
    """The maps of the container's user namespace (a new one, or the one it joins: then the
    maps are that namespace's), None without one."""
    linux = spec.linux or oci.Linux()
    users = [ns for ns in linux.namespaces or () if ns.type == "user"]
    if not users:
        return None
    if not linux.uidMappings or not linux.gidMappings:
        raise PlanError("a user namespace needs linux.uidMappings and linux.gidMappings")
    return IdMaps(uid=tuple((m.containerID, m.hostID, m.size) for m in linux.uidMappings),
                  gid=tuple((m.containerID, m.hostID, m.size) for m in linux.gidMappings))


def _idmap_lower(notes: dict[str, str]) -> tuple[str, str, bool] | None:
    """``berth.rootfs.idmap``: ``<source dir>\\n<mount point>[\\ncopy]`` -> (source, mount
    point, idmapped): ``copy`` names a chown'd copy of the layers, attached as it is."""
    value = notes.get(ANNOTATION_IDMAP)
    if not value:
        return None
    src, target, *rest = value.split("\n")
    if not src or not target or rest not in ([], ["copy"]):
        raise PlanError(f"bad {ANNOTATION_IDMAP} annotation {value!r}")
    return src, target, not rest


def _caps(spec: oci.Spec, host: HostInfo) -> CapPlan | None:
    c = spec.process.capabilities if spec.process else None
    if c is None:
        return None
    # Never ask for a capability this process lacks: --privileged lists every cap Docker
    # knows, and a host may withhold some (this VM's bounding set lacks CAP_SYS_RESOURCE).
    have = host.permitted & host.bounding
    return CapPlan(
        bounding=capmod.to_mask(c.bounding) & host.bounding,
        effective=capmod.to_mask(c.effective) & have,
        permitted=capmod.to_mask(c.permitted) & have,
        inheritable=capmod.to_mask(c.inheritable) & have,
        ambient=capmod.to_mask(c.ambient) & have,
        last_cap=host.cap_last_cap,
        drop_if_not_root=bool(spec.annotations and ANNOTATION_USER in spec.annotations),
    )


def _rlimits(rlimits: list[oci.Rlimit] | None) -> tuple[tuple[int, int, int], ...]:
    out = []
    for r in rlimits or ():
        name = r.type.removeprefix("RLIMIT_")
        if name not in Resource.__members__:
            raise PlanError(f"unknown rlimit {r.type!r}")
        out.append((int(Resource[name]), r.soft, r.hard))
    return tuple(out)


def build_plan(spec: oci.Spec, host: HostInfo, *, seccomp_bpf: bytes | None = None,
               console: str | None = None,
               is_dir: Callable[[str], bool] = os.path.isdir) -> Plan:
    """Raises PlanError for a spec this runtime cannot run."""
    if spec.process is None or not spec.process.args:
        raise PlanError("process.args must not be empty")
    if spec.root is None:
        raise PlanError("root.path is required")
    proc, linux = spec.process, spec.linux or oci.Linux()
    notes = spec.annotations or {}
    pre_unshare, pre_join, unshare, join = _namespaces(spec)
    ns_flags = pre_unshare | unshare | sum(f for _, f in (*pre_join, *join))
    if not ns_flags & CloneFlags.NEWNS:
        raise PlanError("a mount namespace is required")
    mounts = tuple(_mount_step(m, is_dir) for m in spec.mounts)
    dev_tmpfs = any(m.dest == "/dev" and m.fstype == "tmpfs" for m in mounts)
    devpts = any(m.dest == "/dev/pts" and m.fstype == "devpts" for m in mounts)
    symlinks: list[tuple[str, str]] = []
    if dev_tmpfs:
        symlinks = [("/proc/self/fd", "/dev/fd"), ("/proc/self/fd/0", "/dev/stdin"),
                    ("/proc/self/fd/1", "/dev/stdout"), ("/proc/self/fd/2", "/dev/stderr")]
        if host.has_kcore:
            symlinks.append(("/proc/kcore", "/dev/core"))
        if devpts:
            symlinks.append(("pts/ptmx", "/dev/ptmx"))
    propagation = _PROPAGATION.get(linux.rootfsPropagation or "", MF.SLAVE | MF.REC)
    overlay = notes.get(ANNOTATION_OVERLAY)
    if overlay is not None and len(overlay.encode()) >= _PAGE_SIZE:
        raise PlanError(f"overlay mount options are {len(overlay.encode())} bytes, over a page")
    sysctls = tuple(("/proc/sys/" + k.replace(".", "/"), v) for k, v in (linux.sysctl or {}).items())
    userns = _id_maps(spec)
    lower = _idmap_lower(notes) if userns is not None else None
    binds = tuple((m.source or "", m.idmap) for m in mounts if m.kind is MountKind.BIND)
    if userns is None and any(idmapped for _, idmapped in binds):
        raise PlanError("the idmap mount option needs a user namespace")
    return Plan(
        rootfs=spec.root.path,
        overlay=overlay,
        root_propagation=int(propagation),
        root_readonly=spec.root.readonly,
        prefork_unshare=int(pre_unshare),
        prefork_join=pre_join,
        unshare=int(unshare),
        join=join,
        hostname=spec.hostname if ns_flags & CloneFlags.NEWUTS and spec.hostname else None,
        loopback=bool(unshare & CloneFlags.NEWNET),
        mounts=mounts,
        cgroups=host.cgroups,
        cgroup2_root=host.cgroup2_root,
        cgroupns=bool(ns_flags & CloneFlags.NEWCGROUP),
        dev_tmpfs=dev_tmpfs,
        devices=_devices(linux.devices, dev_tmpfs),
        symlinks=tuple(symlinks),
        console=console if proc.terminal else None,
        masked=tuple(linux.maskedPaths or ()),
        readonly=tuple(linux.readonlyPaths or ()),
        sysctls=sysctls,
        rlimits=_rlimits(proc.rlimits),
        oom_score_adj=proc.oomScoreAdj,
        uid=proc.user.uid,
        gid=proc.user.gid,
        additional_gids=tuple(proc.user.additionalGids or ()),
        resolve_user=notes.get(ANNOTATION_USER),
        cwd=proc.cwd or "/",
        args=tuple(proc.args),
        env=tuple(proc.env),
        terminal=proc.terminal,
        umask=proc.user.umask if proc.user.umask is not None else 0o022,
        caps=_caps(spec, host),
        no_new_privs=proc.noNewPrivileges,
        seccomp_bpf=seccomp_bpf,
        seccomp_early=seccomp_bpf is not None and not proc.noNewPrivileges,
        group_add=tuple(g for g in notes.get(ANNOTATION_GROUPS, "").split(",") if g),
        userns=userns,
        userns_path=next((ns.path for ns in linux.namespaces or () if ns.type == "user" and ns.path), None),
        userns_trees=(((lower[0], lower[2]),) if lower else ()) + binds if userns is not None else (),
        idmap_lower=lower[1] if lower else None,
    )
