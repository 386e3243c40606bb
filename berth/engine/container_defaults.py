"""The daemon's defaults for containers (daemon.json's ``log-driver``, ``log-opts``,
``default-ulimits``, ``default-shm-size``, ``default-cgroupns-mode``, ``dns*``, ``init``,
``init-path``, ``no-new-privileges``, ``seccomp-profile``, ``runtimes``, ``default-runtime``,
``cgroup-parent``),
and where each applies, as dockerd applies them:

    at create  log driver and options, /dev/shm size, cgroup namespace mode, runtime (recorded in HostConfig)
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

    def at_create(self, hc: HostConfig) -> None:
        """The defaults a create records (before logdrivers.normalize checks the log config)."""
        lc = hc.LogConfig
        if not lc.Type:
            lc.Type = self.log_driver
        if lc.Type == self.log_driver:
            lc.Config = {**self.log_opts, **(lc.Config or {})}
        if hc.ShmSize == 0:
            hc.ShmSize = self.shm_size
        if not hc.CgroupnsMode:
            hc.CgroupnsMode = self.cgroupns_mode
        hc.Runtime = self.runtimes.check(hc.Runtime)
        if not self.cgroups:
            refuse_limits(hc)

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

