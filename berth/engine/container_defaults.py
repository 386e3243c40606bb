"""The daemon's defaults for containers (daemon.json's ``log-driver``, ``log-opts``,
``default-ulimits``, ``default-shm-size``, ``default-ipc-mode``, ``default-cgroupns-mode``, ``dns*``, ``init``,
``init-path``, ``no-new-privileges``, ``seccomp-profile``, ``runtimes``, ``default-runtime``,
``cgroup-parent``),
and where each applies, as dockerd applies them:

    at create  log driver and options, /dev/shm size, IPC mode, cgroup namespace mode, runtime (recorded in HostConfig);
               rootless: limits refused without cgroups, dropped with a warning where the
               delegated tree lacks their controller (``discard_unsupported``)
    at start   ulimits (the container's own win by name), DNS (when the container sets none),
               init, no-new-privileges and the seccomp profile (unless its --security-opt says),
               the cgroup parent (its --cgroup-parent, else the daemon's, else /berth)

The daemon fills one ``ContainerDefaults`` and changes it in place on SIGHUP (ulimits).
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field
from typing import Any

from berth.engine.model import DEFAULT_CGROUP_PARENT
from berth.engine.runtimes import Runtimes
from berth.errors import InvalidArgument
from berth.schema.containers import HostConfig


@dataclass
class ContainerDefaults:
    log_driver: str = "json-file"
    log_opts: dict[str, str] = field(default_factory=dict)
    ulimits: dict[str, dict[str, Any]] = field(default_factory=dict)   # name -> {Name, Soft, Hard}
    shm_size: int = 64 << 20
    ipc_mode: str = "private"        # or "shareable" (dockerd's default-ipc-mode)
    cgroupns_mode: str = ""          # "" = Docker's: private on cgroup v2 hosts, host on v1
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_options: list[str] = field(default_factory=list)
    init: bool = False
    init_path: str = ""
    no_new_privileges: bool = False
    seccomp_profile: str = ""        # "", "builtin", "unconfined" or a file's path
    journal_socket: str = "/run/systemd/journal/socket"  # the journald driver's (tests bind their own)
    runtimes: Runtimes = field(default_factory=Runtimes)  # runtimes and default-runtime
    cgroup_parent: str = ""          # "" = /berth
    cgroups: bool = True             # False: a rootless engine without a delegated cgroup v2 tree
    # a rootless engine's delegated tree: the controllers it has (None: rootful, all of the host's)
    controllers: frozenset[str] | None = None
    blkio_weight: bool = True        # False: neither CFQ's nor BFQ's weight, nor cgroup v2's io

    def discard_blkio_weight(self, hc: HostConfig) -> list[str]:
        """As dockerd's verifyPlatformContainerResources, before its range check: a weight the
        host cannot apply is dropped with a warning."""
        if hc.BlkioWeight and not self.blkio_weight:
            hc.BlkioWeight = 0
            return [BLKIO]
        return []

    def at_create(self, hc: HostConfig) -> list[str]:
        """The defaults a create records (before logdrivers.normalize checks the log config);
        the warnings for limits dropped because the delegated cgroup tree cannot apply them."""
        lc = hc.LogConfig
        if not lc.Type:
            lc.Type = self.log_driver
        if lc.Type == self.log_driver:
            lc.Config = {**self.log_opts, **(lc.Config or {})}
        if hc.ShmSize == 0:
            hc.ShmSize = self.shm_size
        if not hc.IpcMode:
            hc.IpcMode = self.ipc_mode
        if not hc.CgroupnsMode:
            hc.CgroupnsMode = self.cgroupns_mode
        hc.Runtime = self.runtimes.check(hc.Runtime)
        if not self.cgroups:
            refuse_limits(hc)
        elif self.controllers is not None:
            return discard_unsupported(hc, self.controllers)
        return []

    def ulimits_for(self, hc: HostConfig) -> list[dict[str, Any]]:
        """The daemon's ulimits, then the container's (which win by name)."""
        out = dict(self.ulimits)
        for u in hc.Ulimits or []:
            if isinstance(u, dict) and u.get("Name"):
                out[str(u["Name"])] = u
        return list(out.values())

    def dns_for(self, hc: HostConfig) -> tuple[list[str], list[str], list[str]]:
        """(servers, search domains, options): the container's, else the daemon's, each on its own."""
        return (list(hc.Dns or self.dns), list(hc.DnsSearch or self.dns_search),
                list(hc.DnsOptions or self.dns_options))

    def cgroups_path_for(self, hc: HostConfig, cid: str) -> str:
        """The OCI cgroupsPath of a container, as dockerd's cgroupfs driver makes it: parent/<id>.

        An absolute parent is below each hierarchy's root; a relative one (``x.slice`` too: the
        cgroupfs driver gives slice names no meaning) is below berthd's own cgroup. ``..`` cannot
        climb out of either (runc's CleanPath)."""
        parent = hc.CgroupParent or self.cgroup_parent or DEFAULT_CGROUP_PARENT
        path = posixpath.normpath(posixpath.join(parent, cid))
        if path.startswith("/"):
            return path
        return posixpath.relpath(posixpath.normpath("/" + path), "/")

    def init_for(self, hc: HostConfig) -> bool:
        return hc.Init if hc.Init is not None else self.init

    def no_new_privileges_for(self, security_opt: list[str], given: bool) -> bool:
        """``given``: what the container's --security-opt says (False when it says nothing)."""
        if any(o.replace(":", "=") == "no-new-privileges=false" for o in security_opt):
            return False
        return given or self.no_new_privileges

    def seccomp_for(self, security_opt: list[str], given: str | dict[str, Any]) -> str | dict[str, Any]:
        """The container's seccomp (``given``) when its --security-opt names one, else the daemon's."""
        if any(o.startswith(("seccomp=", "seccomp:")) for o in security_opt) or not self.seccomp_profile:
            return given
        if self.seccomp_profile == "builtin":
            return "default"
        if self.seccomp_profile == "unconfined":
            return "unconfined"
        with open(self.seccomp_profile) as f:
            profile: dict[str, Any] = json.load(f)
        return profile


NO_CGROUPS = ("Running in rootless-mode without cgroups. To enable cgroups in rootless-mode, you need to "
              "boot the system in cgroup v2 mode.")
_LIMITS = (("Memory", "--memory"), ("MemorySwap", "--memory-swap"), ("MemoryReservation", "--memory-reservation"),
           ("NanoCpus", "--cpus"), ("CpuShares", "--cpu-shares"), ("CpuQuota", "--cpu-quota"),
           ("CpuPeriod", "--cpu-period"), ("CpusetCpus", "--cpuset-cpus"), ("CpusetMems", "--cpuset-mems"),
           ("BlkioWeight", "--blkio-weight"))


def refuse_limits(hc: HostConfig) -> None:
    """A rootless engine without cgroups refuses every resource limit, naming the flag, with
    the warning Docker's rootless ``docker info`` shows. Raises InvalidArgument."""
    for name, flag in _LIMITS:
        if getattr(hc, name, None) not in (None, 0, "", -1):
            raise InvalidArgument(f"{flag}: {NO_CGROUPS}")
    if hc.PidsLimit not in (None, 0, -1):
        raise InvalidArgument(f"--pids-limit: {NO_CGROUPS}")


# A rootless engine's delegated cgroup v2 tree lists its controllers in cgroup.controllers (a
# parent that does not enable one withholds it; a hybrid host's cgroup2 holds none of memory,
# pids, cpu). As dockerd's verifyPlatformContainerResources on a host without them: a limit
# whose controller is missing is dropped with its warning (the create's Warnings, which the
# docker CLI prints), except --cpus, which is refused.
_SUFFIX = " or the cgroup is not mounted."
MEMORY = f"Your kernel does not support memory limit capabilities{_SUFFIX} Limitation discarded."
RESERVATION = f"Your kernel does not support memory soft limit capabilities{_SUFFIX} Limitation discarded."
PIDS = f"Your kernel does not support PIDs limit capabilities{_SUFFIX} PIDs limit discarded."
SHARES = f"Your kernel does not support CPU shares{_SUFFIX} Shares discarded."
PERIOD = f"Your kernel does not support CPU cfs period{_SUFFIX} Period discarded."
QUOTA = f"Your kernel does not support CPU cfs quota{_SUFFIX} Quota discarded."
CPUSET = f"Your kernel does not support cpuset{_SUFFIX} Cpuset discarded."
BLKIO = f"Your kernel does not support Block I/O weight{_SUFFIX} Weight discarded."
NANO_CPUS = ("NanoCPUs can not be set, as your kernel does not support CPU CFS scheduler or the cgroup is "
             "not mounted")


def discard_unsupported(hc: HostConfig, controllers: frozenset[str]) -> list[str]:
    """Drop from ``hc`` each limit whose cgroup v2 controller is not in ``controllers``; the
    warnings, in dockerd's order and words. Raises InvalidArgument for ``--cpus`` without cpu."""
    out: list[str] = []
    out += _memory(hc, "memory" in controllers)
    if hc.PidsLimit is not None and "pids" not in controllers:
        if hc.PidsLimit > 0:
            out.append(PIDS)
        hc.PidsLimit = None
    out += _cpu(hc, "cpu" in controllers)
    if (hc.CpusetCpus or hc.CpusetMems) and "cpuset" not in controllers:
        out.append(CPUSET)
        hc.CpusetCpus = hc.CpusetMems = ""
    if hc.BlkioWeight and "io" not in controllers:
        out.append(BLKIO)
        hc.BlkioWeight = 0
    return out


def _memory(hc: HostConfig, have: bool) -> list[str]:
    out = []
    if hc.Memory > 0 and not have:
        out.append(MEMORY)
        hc.Memory, hc.MemorySwap = 0, -1
    if hc.MemoryReservation > 0 and not have:
        out.append(RESERVATION)
        hc.MemoryReservation = 0
    return out


def _cpu(hc: HostConfig, have: bool) -> list[str]:
    if have:
        return []
    if hc.NanoCpus > 0:
        raise InvalidArgument(NANO_CPUS)
    out = []
    if hc.CpuShares > 0:
        out.append(SHARES)
        hc.CpuShares = 0
    if hc.CpuPeriod:
        out.append(PERIOD)
        hc.CpuPeriod = 0
    if hc.CpuQuota:
        out.append(QUOTA)
        hc.CpuQuota = 0
    return out
