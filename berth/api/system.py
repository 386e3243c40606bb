"""/_ping, /version, /info."""

from __future__ import annotations

import ipaddress
import os
import platform
import socket
import time
from typing import Any

import berth
from berth.api import ping as early
from berth.api.app import App, DaemonInfo, Routes
from berth.api.http import Request, Response
from berth.api.ping import API_VERSION as API_VERSION, MIN_API_VERSION as MIN_API_VERSION, SERVER as SERVER
from berth.api.shape import json_response as json_response  # re-exported: networks, build
from berth.engine.model import Status

def _os_release() -> tuple[str, str]:
    name, version = "Linux", ""
    try:
        for line in open("/etc/os-release"):
            k, _, v = line.strip().partition("=")
            if k == "PRETTY_NAME":
                name = v.strip('"')
            elif k == "VERSION_ID":
                version = v.strip('"')
    except OSError:
        pass
    return name, version


def _mem_total() -> int:
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def info_for_version(req: Request, d: dict[str, Any]) -> dict[str, Any]:
    """GET /info as the requested API version shapes it (fields added or dropped per version)."""
    if req.version_at_least("1.42"):  # omitted when unsupported: berth never limits kernel memory
        d.pop("KernelMemory", None)
        d.pop("KernelMemoryTCP", None)
    if not req.version_at_least("1.44"):
        d.pop("CDISpecDirs", None)
    else:
        d["Runtimes"] = {k: {**v, "status": {}} for k, v in d["Runtimes"].items()}
    if not req.version_at_least("1.46"):
        d.pop("Containerd", None)
    if req.version_at_least("1.49"):
        reg = dict(d["RegistryConfig"])
        reg.pop("AllowNondistributableArtifactsCIDRs", None)
        reg.pop("AllowNondistributableArtifactsHostnames", None)
        d["RegistryConfig"] = reg
    else:
        d.pop("FirewallBackend", None)
    if req.version_at_least("1.50"):
        d.pop("BridgeNfIptables", None)
        d.pop("BridgeNfIp6tables", None)
    else:
        d.pop("DiscoveredDevices", None)
    return d


def registry_config(insecure: list[str], mirrors: list[str]) -> dict[str, object]:
    """/info's RegistryConfig as dockerd builds it from insecure-registries and registry-mirrors:
    CIDRs (always 127.0.0.0/8) apart from host names, which get an index config each."""
    cidrs = ["127.0.0.0/8"]
    indexes: dict[str, object] = {}
    for entry in insecure:
        entry = entry.removeprefix("http://").removeprefix("https://").rstrip("/")
        try:
            net = str(ipaddress.ip_network(entry, strict=False))
            if "/" in entry and net not in cidrs:
                cidrs.append(net)
                continue
        except ValueError:
            pass
        indexes[entry] = {"Name": entry, "Mirrors": [], "Secure": False, "Official": False}
    hub_mirrors = [m.rstrip("/") + "/" for m in mirrors]
    indexes["docker.io"] = {"Name": "docker.io", "Mirrors": hub_mirrors, "Secure": True, "Official": True}
    return {"AllowNondistributableArtifactsCIDRs": [], "AllowNondistributableArtifactsHostnames": [],
            "InsecureRegistryCIDRs": cidrs, "IndexConfigs": indexes, "Mirrors": hub_mirrors}


async def ping(app: App, req: Request) -> Response:
    return await early.ping(req)


async def version(app: App, req: Request) -> Response:
    return await early.version(req)


async def info(app: App, req: Request) -> Response:
    cs = app.containers.list()
    running = sum(1 for c in cs if c.state.status == Status.RUNNING)
    paused = sum(1 for c in cs if c.state.status == Status.PAUSED)
    os_name, os_version = _os_release()
    uname = platform.uname()
    cg = app.cgroup_version
    conf = app.config

    def has(controller: str) -> bool:  # a limit the engine can apply (rootless: its delegated tree's)
        return conf.cgroups and (conf.controllers is None or controller in conf.controllers)

    return json_response(info_for_version(req, {
        "ID": app.daemon_id,
        "Containers": len(cs), "ContainersRunning": running, "ContainersPaused": paused,
        "ContainersStopped": len(cs) - running - paused,
        "Images": len(app.images.list()),
        "Driver": "fuse-overlayfs" if conf.fuse_storage else "overlay2",
        "DriverStatus": [*conf.driver_status] if conf.fuse_storage else [
            ["Backing Filesystem", "extfs"], ["Supports d_type", "true"], ["Native Overlay Diff", "true"],
            ["userxattr", "true" if conf.rootless else "false"], *conf.driver_status],
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "null"], "Authorization": None,
                    "Log": ["json-file"]},
        "MemoryLimit": has("memory"), "SwapLimit": has("memory") and cg == "2" or conf.cgroups and os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"),
        "KernelMemory": False, "KernelMemoryTCP": False,
        "CpuCfsPeriod": has("cpu"), "CpuCfsQuota": has("cpu"), "CPUShares": has("cpu"),
        "CPUSet": has("cpuset"), "PidsLimit": has("pids"),
        "IPv4Forwarding": True, "BridgeNfIptables": False, "BridgeNfIp6tables": False,
        "Debug": conf.debug, "NFd": len(os.listdir("/proc/self/fd")), "OomKillDisable": cg == "1",
        "NGoroutines": 1, "SystemTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "LoggingDriver": conf.logging_driver, "CgroupDriver": "cgroupfs" if conf.cgroups else "none", "CgroupVersion": cg,
        "NEventsListener": 0, "KernelVersion": uname.release,
        "OperatingSystem": os_name, "OSVersion": os_version, "OSType": "linux",
        "Architecture": uname.machine, "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": registry_config(app.distribution.opts.insecure, app.distribution.opts.mirrors),
        "NCPU": os.cpu_count() or 1, "MemTotal": _mem_total(), "GenericResources": None,
        "DockerRootDir": str(app.root),
        "HttpProxy": "", "HttpsProxy": "", "NoProxy": "", "Name": socket.gethostname(), "Labels": list(conf.labels),
        "ExperimentalBuild": False, "ServerVersion": berth.__version__,
        "Runtimes": app.containers.defaults.runtimes.info(), "DefaultRuntime": app.containers.defaults.runtimes.default,
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False,
                  "Error": "", "RemoteManagers": None},
        "LiveRestoreEnabled": app.live_restore, "Isolation": "", "InitBinary": conf.init_binary or "docker-init",
        "ContainerdCommit": {"ID": "", "Expected": ""}, "RuncCommit": {"ID": "", "Expected": ""},
        "InitCommit": {"ID": "", "Expected": ""},
        "SecurityOptions": ["name=seccomp,profile=builtin"] + (["name=no-new-privileges"] if conf.no_new_privileges
                                                               else []) + (["name=cgroupns"] if cg == "2" else [])
                            + _rootless(conf) + list(conf.security_options),
        "Warnings": list(conf.warnings) or None,
        "Uptime": int(time.time() - app.started),
        "CDISpecDirs": [], "Containerd": None, "FirewallBackend": {"Driver": "nftables"},
        "DiscoveredDevices": [],
    }))


def _rootless(conf: DaemonInfo) -> list[str]:
    """Docker rootless's security option; berth's adds the tool that connects its network."""
    if not conf.rootless:
        return []
    return ["name=rootless" + (f",network={conf.rootless_net}" if conf.rootless_net else "")]


ROUTES: Routes = [
    ("GET", "/_ping", ping),
    ("HEAD", "/_ping", ping),
    ("GET", "/version", version),
    ("GET", "/info", info),
]
