"""Docker's OCI spec for a container (pure): what dockerd 20.10 writes to config.json.

The reference is shared/reference/security/docker-run-busybox.config.json and its variants;
``build_spec`` reproduces them except the libnetwork prestart hook, which berth does not use.

Two things cannot be decided on the host and are handed to the init as annotations:

- ``berth.user``: a ``User`` naming a user or group. The init resolves it after pivot_root from
  the container's /etc/passwd and /etc/group, and (as Docker) clears the effective and
  permitted capabilities when the resolved uid is not 0.
- ``berth.groups``: ``GroupAdd`` (comma-separated) when it names a group: the init resolves
  it in the container's /etc/group and adds the gids after the user's own.
- ``berth.rootfs.overlay``: overlay mount options; the init mounts the overlay at root.path
  inside the container's mount namespace, so the host never sees it.
"""

from __future__ import annotations

import functools

from typing import Any, Literal

import msgspec

from berth.oci import spec as oci
from berth.runtime import caps as capmod
from berth.state import rootless

ANNOTATION_USER = "berth.user"
ANNOTATION_OVERLAY = "berth.rootfs.overlay"
ANNOTATION_GROUPS = "berth.groups"
# In a user namespace: "<dir>\n<mount point>[\ncopy]", the directory holding the image's layers,
# idmapped by the runtime (as it is with "copy": a chown'd copy) and attached at the mount
# point before the overlay is mounted
ANNOTATION_IDMAP = "berth.rootfs.idmap"

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MIB = 1024 * 1024

MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

# linux.resources.devices for a non-privileged container; the last matching rule wins.
_DEVICE_RULES = (
    (False, None, None, None), (True, "c", 1, 5), (True, "c", 1, 3), (True, "c", 1, 9),
    (True, "c", 1, 8), (True, "c", 5, 0), (True, "c", 5, 1), (False, "c", 10, 229),
)


def merge_env(env: list[str], hostname: str, tty: bool) -> list[str]:
    """Docker's CreateDaemonEnvironment: PATH, HOSTNAME, TERM, then the container's env
    replacing same-named entries in place and appending the rest."""
    out = [f"PATH={DEFAULT_PATH}", f"HOSTNAME={hostname}"] + (["TERM=xterm"] if tty else [])
    index = {e.partition("=")[0]: i for i, e in enumerate(out)}
    for e in env:
        key = e.partition("=")[0]
        if key in index:
            out[index[key]] = e
        else:
            index[key] = len(out)
            out.append(e)
    return out


def _parse_numeric_user(user: str) -> tuple[int | None, int | None, bool]:
    """-> (uid, gid, needs_init_resolution)."""
    if not user:
        return 0, 0, False
    name, sep, group = user.partition(":")
    uid = int(name) if name.isdigit() else None
    gid = int(group) if group.isdigit() else None
    if uid is not None and sep and gid is not None:
        return uid, gid, False
    return uid, gid, True


def _mounts(*, privileged: bool, shm_size: int, readonly_rootfs: bool,
            files: list[tuple[str, str]]) -> list[oci.Mount]:
    ro = [] if privileged else ["ro"]
    # tty's gid 5: unless a rootless engine's single-id map leaves it out (devpts refuses it)
    tty = ["gid=5"] if rootless.max_gid() >= 5 else []
    mounts = [
        oci.Mount(destination="/proc", type="proc", source="proc", options=["nosuid", "noexec", "nodev"]),
        oci.Mount(destination="/dev", type="tmpfs", source="tmpfs",
                  options=["nosuid", "strictatime", "mode=755", "size=65536k"]),
        oci.Mount(destination="/dev/pts", type="devpts", source="devpts",
                  options=["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", *tty]),
        oci.Mount(destination="/sys", type="sysfs", source="sysfs", options=["nosuid", "noexec", "nodev", *ro]),
        oci.Mount(destination="/sys/fs/cgroup", type="cgroup", source="cgroup",
                  options=[*ro, "nosuid", "noexec", "nodev"]),
        oci.Mount(destination="/dev/mqueue", type="mqueue", source="mqueue", options=["nosuid", "noexec", "nodev"]),
        oci.Mount(destination="/dev/shm", type="tmpfs", source="shm",
                  options=["nosuid", "noexec", "nodev", "mode=1777", f"size={shm_size}"]),
    ]
    return mounts + _file_mounts(readonly_rootfs, files)


def _own_shm(defaults: list[oci.Mount], extra: list[oci.Mount]) -> list[oci.Mount]:
    """The default /dev/shm tmpfs left out when another mount is at /dev/shm (a pod's, or the
    user's ``-v x:/dev/shm``): under it, it would only be hidden (dockerd's IpcMounts too)."""
    if not any(m.destination.rstrip("/") == "/dev/shm" for m in extra):
        return defaults
    return [m for m in defaults if m.destination != "/dev/shm"]


def _file_mounts(readonly_rootfs: bool, files: list[tuple[str, str]]) -> list[oci.Mount]:
    bind_opts = ["rbind", "ro", "rprivate"] if readonly_rootfs else ["rbind", "rprivate"]
    return [oci.Mount(destination=dest, type="bind", source=src, options=list(bind_opts))
            for dest, src in files if src]


def _user_mounts(files: list[oci.Mount], extra: list[oci.Mount]) -> list[oci.Mount]:
    """Docker's order for the etc files and user mounts: parents before children (a volume at
    /etc must not hide /etc/hosts), the user's mount winning on the same destination."""
    taken = {m.destination.rstrip("/") for m in extra}
    both = [m for m in files if m.destination not in taken] + list(extra)
    return sorted(both, key=lambda m: len([p for p in m.destination.split("/") if p]))


def _resources(*, privileged: bool, memory: int, memory_swap: int, nano_cpus: int,
               cpu_shares: int, cpu_quota: int, cpu_period: int,
               pids_limit: int | None) -> oci.Resources:
    if privileged:
        devices = [oci.DeviceCgroup(allow=True, access="rwm")]
    else:
        devices = [oci.DeviceCgroup(allow=a, type=t, major=ma, minor=mi, access="rwm")
                   for a, t, ma, mi in _DEVICE_RULES]
    mem = oci.Memory(disableOOMKiller=False)
    if memory > 0:
        mem.limit = memory
        mem.swap = memory * 2 if memory_swap == 0 else memory_swap
    cpu = oci.CPU(shares=cpu_shares)
    if nano_cpus > 0:
        cpu.period = 100_000
        cpu.quota = nano_cpus * 100_000 // 1_000_000_000
    else:
        if cpu_quota:
            cpu.quota = cpu_quota
        if cpu_period:
            cpu.period = cpu_period
    pids = oci.Pids(limit=pids_limit) if pids_limit else None
    return oci.Resources(devices=devices, memory=mem, cpu=cpu, pids=pids, blockIO=oci.BlockIO(weight=0))


def _seccomp(mode: str | dict[str, Any], cap_list: list[str], privileged: bool) -> oci.Seccomp | None:
    """``mode``: "default", "unconfined", or a profile in Docker's JSON format (``--security-opt
    seccomp=profile.json``; the CLI sends the file's contents)."""
    if privileged or mode == "unconfined":
        return None
    if mode == "default":
        return _default_seccomp(tuple(cap_list))
    return _resolve_seccomp(mode, cap_list)


@functools.lru_cache(maxsize=32)
def _default_seccomp(caps: tuple[str, ...]) -> oci.Seccomp | None:
    """Docker's default profile for one capability set, resolved once (≈1 ms of berthd's CPU
    per start otherwise). Shared between specs: nothing changes a spec's seccomp after this."""
    return _resolve_seccomp("default", list(caps))


def default_seccomp() -> oci.Seccomp | None:
    """Docker's default profile for Docker's default capabilities: a plain ``docker run``'s."""
    return _default_seccomp(tuple(capmod.tweak(capmod.DEFAULT_CAPS, [], [], False)))


def _resolve_seccomp(mode: str | dict[str, Any], cap_list: list[str]) -> oci.Seccomp | None:

    from berth.runtime import seccomp as profiles  # the colleague's module; lazy on purpose

    profile = profiles.profile_for(cap_list, profile=mode if isinstance(mode, dict) else None)
    if profile is None:
        return None
    if isinstance(profile, oci.Seccomp):
        return profile
    return msgspec.convert(profile, oci.Seccomp)


def build_spec(*, args: list[str], env: list[str], cwd: str, user: str, hostname: str,
               rootfs: str, tty: bool, hostname_file: str, hosts_file: str, resolv_file: str,
               cgroups_path: str, memory: int = 0, memory_swap: int = 0, nano_cpus: int = 0,
               cpu_shares: int = 0, cpu_quota: int = 0, cpu_period: int = 0,
               pids_limit: int | None = None, privileged: bool = False,
               cap_add: list[str] | None = None, cap_drop: list[str] | None = None,
               readonly_rootfs: bool = False, no_new_privileges: bool = False,
               seccomp: Literal["default", "unconfined"] | dict[str, Any] = "default", shm_size: int = 64 * MIB,
               overlay: str | None = None, annotations: dict[str, str] | None = None,
               ulimits: list[tuple[str, int, int]] | None = None,
               cgroupns: bool = False, netns: str | None = "",
               extra_mounts: list[oci.Mount] | None = None,
               group_add: list[str] | None = None, masked_paths: list[str] | None = None,
               readonly_paths: list[str] | None = None) -> oci.Spec:
    """The spec dockerd would write for this container.

    ``ulimits`` are ``(name, soft, hard)`` with Docker's names (``nofile``); ``cgroupns`` adds
    a private cgroup namespace (Docker's default on cgroup v2 hosts only). ``netns``: ``""`` a
    new network namespace, a path to join one (``/proc/<pid>/ns/net``), None for the host's
    (no network sysctls then: they would change the host). ``extra_mounts`` (volumes, binds,
    tmpfs) come after Docker's own, in the given order. ``group_add`` (``--group-add``): group
    names or gids; numbers go straight to additionalGids, names are resolved by the init.
    ``masked_paths`` and ``readonly_paths`` replace Docker's lists (HostConfig's, None: the
    defaults); a privileged container has neither.

    Raises:
        InvalidArgument: an unknown capability in ``cap_add``/``cap_drop``.
    """
    cap_list = capmod.tweak(capmod.DEFAULT_CAPS, cap_add or [], cap_drop or [], privileged)
    uid, gid, resolve_in_init = _parse_numeric_user(user)
    notes = dict(annotations or {})
    if resolve_in_init:
        notes[ANNOTATION_USER] = user
    extra_gids = [int(g) for g in group_add or [] if g.isdigit()]
    if group_add and (resolve_in_init or len(extra_gids) != len(group_add)):
        notes[ANNOTATION_GROUPS] = ",".join(group_add)
        extra_gids = []
    if overlay:
        notes[ANNOTATION_OVERLAY] = overlay
    # Docker leaves effective/permitted out for a non-root user; for a name the init decides.
    root_user = uid == 0 or (uid is None)
    capabilities = oci.Capabilities(
        bounding=list(cap_list),
        effective=list(cap_list) if root_user else None,
        permitted=list(cap_list) if root_user else None,
    )
    process = oci.Process(
        terminal=tty,
        user=oci.User(uid=uid or 0, gid=gid or 0,
                      additionalGids=list(dict.fromkeys([gid or 0, *extra_gids]))),
        args=list(args),
        env=merge_env(env, hostname, tty),
        cwd=cwd or "/",
        capabilities=capabilities,
        rlimits=[oci.Rlimit(type=f"RLIMIT_{n.upper()}", soft=s, hard=h) for n, s, h in ulimits] if ulimits else None,
        noNewPrivileges=no_new_privileges,
        oomScoreAdj=0,
    )
    namespaces = [oci.Namespace(type=t) for t in ("mount", "network", "uts", "pid", "ipc")
                  if t != "network" or netns is not None]
    if netns:
        namespaces = [oci.Namespace(type="network", path=netns) if n.type == "network" else n
                      for n in namespaces]
    # Nested (rootless), the range may only name gids this user namespace maps.
    groups = f"0 {rootless.max_gid()}" if rootless.nested() else "0 2147483647"
    sysctl = {"net.ipv4.ip_unprivileged_port_start": "0", "net.ipv4.ping_group_range": groups}
    if cgroupns:
        namespaces.append(oci.Namespace(type="cgroup"))
    linux = oci.Linux(
        sysctl=sysctl if netns is not None else None,
        resources=_resources(privileged=privileged, memory=memory, memory_swap=memory_swap,
                             nano_cpus=nano_cpus, cpu_shares=cpu_shares, cpu_quota=cpu_quota,
                             cpu_period=cpu_period, pids_limit=pids_limit),
        cgroupsPath=cgroups_path or None,
        namespaces=namespaces,
        seccomp=_seccomp(seccomp, cap_list, privileged),
        maskedPaths=None if privileged else list(MASKED_PATHS if masked_paths is None else masked_paths),
        readonlyPaths=None if privileged else list(READONLY_PATHS if readonly_paths is None else readonly_paths),
    )
    return oci.Spec(
        process=process,
        root=oci.Root(path=rootfs, readonly=readonly_rootfs),
        hostname=hostname,
        mounts=_own_shm(_mounts(privileged=privileged, shm_size=shm_size, readonly_rootfs=readonly_rootfs,
                                files=[]), extra_mounts or []) + _user_mounts(
            _file_mounts(readonly_rootfs, [("/etc/resolv.conf", resolv_file), ("/etc/hostname", hostname_file),
                                           ("/etc/hosts", hosts_file)]), extra_mounts or []),
        annotations=notes or None,
        linux=linux,
    )
