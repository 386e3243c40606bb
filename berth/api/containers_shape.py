"""Docker's JSON for containers: the ``ps`` summary, inspect (with its mounts and health), by
API version. Everything here reads engine records; nothing changes state."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import msgspec

from berth.api import networks as networks_api
from berth.api.app import App
from berth.api.http import Request
from berth.api.shape import config_json, record_time
from berth.engine.health import Health
from berth.engine.model import Container, Status
from berth.engine.mount_specs import MountPoint
from berth.engine.volumes import Volumes
from berth.schema import human

MASKED_PATHS = ["/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware"]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


def status_text(c: Container, now: float) -> str:
    st = c.state
    if st.status == Status.RUNNING:
        return "Up " + human.duration(now - (record_time(st.started_at) or now))
    if st.status == Status.PAUSED:
        return "Up " + human.duration(now - (record_time(st.started_at) or now)) + " (Paused)"
    if st.status == Status.RESTARTING:
        return f"Restarting ({st.exit_code}) " + human.duration(now - (record_time(st.finished_at) or now)) + " ago"
    if st.status == Status.REMOVING:
        return "Removal In Progress"
    if st.status == Status.DEAD:
        return "Dead"
    if st.status == Status.EXITED:
        return f"Exited ({st.exit_code}) " + human.duration(now - (record_time(st.finished_at) or now)) + " ago"
    return "Created"


def _command(c: Container) -> str:
    """As dockerd lists it: arguments containing a space are single-quoted."""
    return " ".join([c.path, *(f"'{a}'" if " " in a else a for a in c.args)])


def _network_settings_summary(c: Container) -> dict[str, Any]:
    mode = c.host_config.NetworkMode
    net = "bridge" if mode == "default" else mode
    return {"Networks": {net: {"IPAMConfig": None, "Links": None, "Aliases": None, "NetworkID": "",
                               "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
                               "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
                               "MacAddress": "", "DriverOpts": None}}}


def mount_json(vols: Volumes, p: MountPoint) -> dict[str, object]:
    """One of a container's ``Mounts``."""
    if p.type == "tmpfs":
        return {"Type": "tmpfs", "Source": "", "Destination": p.destination, "Mode": "", "RW": True,
                "Propagation": ""}
    if p.type == "bind":
        return {"Type": "bind", "Source": p.source, "Destination": p.destination, "Mode": p.mode, "RW": p.rw,
                "Propagation": p.propagation or "rprivate"}
    return {"Type": "volume", "Name": p.source, "Source": _volume_source(vols.root, p.source),
            "Destination": p.destination, "Driver": "local", "Mode": p.mode or "z", "RW": p.rw,
            "Propagation": ""}


@functools.lru_cache(maxsize=4096)
def _volume_source(root: Path, name: str) -> str:
    """``Volumes.data_dir`` as a string (pathlib was 40% of listing 1,000 containers)."""
    return f"{root}/{name}/_data"


def mounts_json(app: App, c: Container) -> list[dict[str, object]]:
    return [mount_json(app.volumes, p) for p in app.volumes.of(c.id)]


def health_json(h: Health) -> dict[str, object]:
    return {"Status": h.status, "FailingStreak": h.failing_streak,
            "Log": [{"Start": p.start, "End": p.end, "ExitCode": p.exit_code, "Output": p.output} for p in h.log]}


def _sizes(app: App, c: Container, out: dict[str, Any]) -> None:
    rw = app.containers.size_rw(c)
    out["SizeRw"] = rw
    out["SizeRootFs"] = rw + app.containers.images.get_by_id(c.image_id).size


def summary(app: App, c: Container, now: float, size: bool) -> dict[str, Any]:
    """One entry of ``GET /containers/json``."""
    s = app.networks.sandbox(c.id)
    nets = networks_api.networks_json(app.networks, c, s)
    d: dict[str, Any] = {
        "Id": c.id, "Names": [f"/{c.name}"], "Image": c.config.Image or c.image_id, "ImageID": c.image_id,
        "Command": _command(c), "Created": int(record_time(c.created)),
        "Ports": networks_api.ports_json(app.networks, c, s),
        "Labels": c.config.Labels or {}, "State": c.state.status.value, "Status": status_text(c, now),
        "HostConfig": {"NetworkMode": c.host_config.NetworkMode},
        "NetworkSettings": {"Networks": nets}, "Mounts": mounts_json(app, c),
    }
    if size:
        _sizes(app, c, d)
    return d


def _host_config(c: Container) -> dict[str, Any]:
    hc: dict[str, Any] = msgspec.to_builtins(c.host_config)
    hc["MaskedPaths"] = c.host_config.MaskedPaths or ([] if c.host_config.Privileged else MASKED_PATHS)
    hc["ReadonlyPaths"] = c.host_config.ReadonlyPaths or ([] if c.host_config.Privileged else READONLY_PATHS)
    if hc.get("ConsoleSize") is None:
        hc["ConsoleSize"] = [0, 0]
    # PortBindings, Dns, DnsOptions, DnsSearch, Devices, Ulimits...: dockerd shows what the client
    # sent, [] from the CLI and null from docker-py's short body (the wire traces, 42 and 60)
    return hc


def _state(c: Container) -> dict[str, Any]:
    st = c.state
    return {"Status": st.status.value, "Running": st.status in (Status.RUNNING, Status.PAUSED),
            "Paused": st.status == Status.PAUSED, "Restarting": st.status == Status.RESTARTING,
            "OOMKilled": st.oom_killed, "Dead": st.status == Status.DEAD, "Pid": st.pid,
            "ExitCode": st.exit_code, "Error": st.error, "StartedAt": st.started_at,
            "FinishedAt": st.finished_at}


def inspect_json(app: App, c: Container, size: bool = False) -> dict[str, Any]:
    """``GET /containers/{id}/json`` at API 1.50 (``inspect_for_version`` adapts it)."""
    engine = app.containers
    d = engine.data.container(c.id)
    try:
        lowers = [str(p) for p in engine.images.lower_dirs(engine.images.get_by_id(c.image_id))]
    except Exception:
        lowers = []
    out: dict[str, Any] = {
        "Id": c.id, "Created": c.created, "Path": c.path, "Args": c.args, "State": _state(c),
        "Image": c.image_id, "ResolvConfPath": str(d.resolv_conf), "HostnamePath": str(d.hostname),
        "HostsPath": str(d.hosts),
        "LogPath": str(d.log) if c.host_config.LogConfig.Type in ("json-file", "") else "",
        "Name": f"/{c.name}",
        "RestartCount": c.restart_count, "Driver": "overlay2", "Platform": "linux", "MountLabel": "",
        "ProcessLabel": "", "AppArmorProfile": "", "ExecIDs": app.execs.ids_for(c.id) or None,
        "HostConfig": _host_config(c),
        "GraphDriver": {"Data": {"LowerDir": ":".join(lowers), "MergedDir": str(d.rootfs),
                                 "UpperDir": str(d.upper), "WorkDir": str(d.work)}, "Name": "overlay2"},
        "Mounts": mounts_json(app, c), "Config": config_json(c.config),
        "NetworkSettings": networks_api.settings_json(app.networks, c),
    }
    h = app.health.get(c.id)
    if h is not None:
        out["State"]["Health"] = health_json(h)
    if size:
        _sizes(app, c, out)
    return out


def inspect_for_version(req: Request, app: App, c: Container, out: dict[str, Any]) -> None:
    """Fields of GET /containers/{id}/json that older API versions shaped differently."""
    nets = (out.get("NetworkSettings") or {}).get("Networks") or {}
    hc = out["HostConfig"]
    for key in ("Sysctls", "StorageOpt", "Mounts", "Tmpfs", "Annotations"):  # omitempty in dockerd's HostConfig
        if not hc.get(key):
            hc.pop(key, None)
    if hc.get("Init") is None:  # *bool, omitempty
        hc.pop("Init", None)
    if req.version_at_least("1.42"):  # deprecated in 1.42
        hc.pop("KernelMemory", None)
    if not req.version_at_least("1.44"):
        cfg = out["Config"]
        mode = c.host_config.NetworkMode
        ep = nets.get("bridge" if mode == "default" else mode)
        sb = app.attachments.networks.sandbox(c.id)
        wanted = sb.endpoints[0].mac_req if sb is not None and sb.endpoints else ""
        if wanted and ep is not None:
            cfg["MacAddress"] = wanted
    if not req.version_at_least("1.45"):  # Aliases then also held the short ID and the hostname
        for name, ep in nets.items():
            if name not in ("bridge", "host", "none") and isinstance(ep, dict):
                ep["Aliases"] = list(dict.fromkeys([*(ep.get("Aliases") or []), c.id[:12], c.config.Hostname]))
    # GwPriority (1.48) and DNSNames (1.44) show at every version: dockerd 28's inspect gates
    # only the aliases above and ImageManifestDescriptor (1.48), which berth does not show
