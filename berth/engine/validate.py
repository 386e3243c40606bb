"""Create-time checks of a container's Config and HostConfig, in Docker's words (pure).

dockerd refuses these with 400 before anything is recorded (daemon/container.go
``verifyContainerSettings``, daemon_unix.go ``verifyPlatformContainerSettings``,
``parseSecurityOpt``). The limits berth already checked in ``engine.containers`` (memory, CPU,
restart policy names, AutoRemove) stay there; this module holds the rest.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any, Literal

from berth.engine.container_stop import parse_signal
from berth.errors import InvalidArgument
from berth.runtime import caps as capmod
from berth.schema.containers import CreateRequest, HostConfig

_GO_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_GO_FALSE = ("0", "f", "F", "FALSE", "false", "False")
_MIN_HEALTH_NS = 1_000_000  # containertypes.MinimumDuration (1ms)
_SECCOMP_NAMED = ("unconfined", "builtin", "")


def check_create(req: CreateRequest, hc: HostConfig) -> None:
    """Raises InvalidArgument with dockerd's message for the first bad value."""
    _check_config(req)
    _check_ports(req.ExposedPorts, hc.PortBindings)
    _check_restart_retries(hc)
    _check_capabilities(hc)
    security_options(hc.SecurityOpt or [])
    _check_platform(hc)
    for item in hc.ExtraHosts or []:
        check_extra_host(item)
    for key in hc.Annotations or {}:
        if key == "":
            raise InvalidArgument("invalid Annotations: the empty string is not permitted as an annotation key")


# -- Config ---------------------------------------------------------------------------------

def _check_config(req: CreateRequest) -> None:
    wd = req.WorkingDir
    if req.StopSignal:
        parse_signal(req.StopSignal)  # InvalidArgument: "Invalid signal: SIGFOO"
    if wd and not wd.startswith("/"):
        raise InvalidArgument(f"the working directory '{wd}' is invalid, it needs to be an absolute path")
    for env in req.Env or []:
        if env.partition("=")[0] == "":
            raise InvalidArgument(f"invalid environment variable: {env}")
    hc = req.Healthcheck or {}
    for field in ("Interval", "Timeout", "StartPeriod", "StartInterval"):
        v = hc.get(field) or 0
        if isinstance(v, int) and v != 0 and v < _MIN_HEALTH_NS:
            raise InvalidArgument(f"{field} in Healthcheck cannot be less than 1ms")
    if isinstance(hc.get("Retries"), int) and hc["Retries"] < 0:
        raise InvalidArgument("Retries in Healthcheck cannot be negative")


# -- ports ----------------------------------------------------------------------------------

def _port_number(s: str) -> bool:
    """go-connections nat.ParsePort: empty, or a 16-bit unsigned decimal."""
    return s == "" or (s.isdigit() and int(s) <= 65535)


def _port_range(s: str) -> bool:
    """nat.ParsePortRangeToInt: empty, ``N`` or ``N-M`` with N <= M."""
    if s == "":
        return True
    lo, sep, hi = s.partition("-")
    if not sep:
        return _port_number(lo) and lo != ""
    return _port_number(lo) and _port_number(hi) and lo != "" and hi != "" and int(lo) <= int(hi)


def _check_ports(exposed: dict[str, Any] | None, bindings: dict[str, Any] | None) -> None:
    for key in list(exposed or {}) + list(bindings or {}):
        port = key.partition("/")[0]
        if not _port_number(port):
            raise InvalidArgument(f'invalid port specification: "{port}"')
    for items in (bindings or {}).values():
        for pb in items or []:
            host_port = str((pb or {}).get("HostPort") or "")
            if not _port_range(host_port.partition("/")[0]):
                raise InvalidArgument(f'invalid port specification: "{host_port}"')


# -- restart policy, capabilities -----------------------------------------------------------

def _check_restart_retries(hc: HostConfig) -> None:
    rp = hc.RestartPolicy
    if rp.Name in ("always", "unless-stopped", "no") and rp.MaximumRetryCount != 0:
        msg = "invalid restart policy: maximum retry count can only be used with 'on-failure'"
        raise InvalidArgument(msg + (" and cannot be negative" if rp.MaximumRetryCount < 0 else ""))
    if rp.Name == "on-failure" and rp.MaximumRetryCount < 0:
        raise InvalidArgument("invalid restart policy: maximum retry count cannot be negative")


def _check_capabilities(hc: HostConfig) -> None:
    for field, names in (("CapAdd", hc.CapAdd), ("CapDrop", hc.CapDrop)):
        try:
            capmod.normalize(names or [])
        except InvalidArgument as e:
            raise InvalidArgument(f"invalid {field}: {e}") from None


# -- security options -----------------------------------------------------------------------

def _go_bool(s: str) -> bool | None:
    return True if s in _GO_TRUE else False if s in _GO_FALSE else None


@dataclass
class SecurityOptions:
    """``--security-opt`` as dockerd's parseSecurityOpt reads it."""

    no_new_privileges: bool = False
    seccomp: Literal["default", "unconfined"] | dict[str, Any] = "default"  # or a profile
    apparmor: str = ""
    labels: list[str] = dc_field(default_factory=list)
    writable_cgroups: bool = False
    systempaths: str = ""


def security_options(opts: list[str]) -> SecurityOptions:
    """dockerd's parseSecurityOpt.

    Raises:
        InvalidArgument: ``invalid --security-opt 1: "x"`` (no key=value), ``... 2: "k=v"``
        (unknown key or bad value), ``Decoding seccomp profile failed: ...``.
    """
    out = SecurityOptions()
    for opt in opts:
        if opt == "no-new-privileges":
            out.no_new_privileges = True
            continue
        if opt == "disable":
            out.labels.append("disable")
            continue
        sep = "=" if "=" in opt else ":" if ":" in opt else ""
        if not sep:
            raise InvalidArgument(f"invalid --security-opt 1: {json.dumps(opt)}")
        key, _, val = opt.partition(sep)
        flag = _go_bool(val)
        if key == "label":
            out.labels.append(val)
        elif key == "apparmor":
            out.apparmor = val
        elif key == "seccomp":
            out.seccomp = _seccomp_profile(val)
        elif key == "no-new-privileges" and flag is not None:
            out.no_new_privileges = flag
        elif key == "writable-cgroups" and flag is not None:
            out.writable_cgroups = flag
        elif key == "systempaths" and val == "unconfined":
            out.systempaths = val
        else:
            raise InvalidArgument(f"invalid --security-opt 2: {json.dumps(opt)}")
    return out


def _seccomp_profile(val: str) -> Literal["default", "unconfined"] | dict[str, Any]:
    if val in _SECCOMP_NAMED:
        return "unconfined" if val == "unconfined" else "default"
    try:
        profile = json.loads(val)
    except ValueError as e:
        raise InvalidArgument(f"Decoding seccomp profile failed: {e}") from None
    if not isinstance(profile, dict):
        raise InvalidArgument("Decoding seccomp profile failed: json: cannot unmarshal "
                              f"{type(profile).__name__} into Go value of type seccomp.Seccomp")
    if profile.get("archMap") and profile.get("architectures"):
        raise InvalidArgument("use either 'architectures' or 'archMap'")
    return profile


# -- platform (daemon_unix.go) --------------------------------------------------------------

def _check_platform(hc: HostConfig) -> None:
    if hc.ShmSize < 0:
        raise InvalidArgument("SHM size can not be less than 0")
    if not -1000 <= hc.OomScoreAdj <= 1000:
        raise InvalidArgument(f"Invalid value {hc.OomScoreAdj}, range for oom score adj is [-1000, 1000]")
    sw = hc.MemorySwappiness
    if sw is not None and sw != -1 and not 0 <= sw <= 100:
        raise InvalidArgument(f"Invalid value: {sw}, valid memory swappiness range is 0-100")
    if 0 < hc.MemoryReservation < 6 * 1024 * 1024:
        raise InvalidArgument("Minimum memory reservation allowed is 6MB")
    if hc.Memory > 0 and hc.MemoryReservation > 0 and hc.Memory < hc.MemoryReservation:
        raise InvalidArgument("Minimum memory limit can not be less than memory reservation limit, see usage")
    if hc.BlkioWeight > 0 and not 10 <= hc.BlkioWeight <= 1000:
        raise InvalidArgument("Range of blkio weight is from 10 to 1000")
    if hc.Isolation not in ("", "default") and hc.Isolation.lower() != "default":
        raise InvalidArgument(f"invalid isolation '{hc.Isolation}' on linux")
    _check_modes(hc)
    _check_cpuset(hc.CpusetCpus, "cpus", "CPUs", "/sys/devices/system/cpu/online")
    _check_cpuset(hc.CpusetMems, "mems", "memory nodes", "/sys/devices/system/node/online")


def _uint_list(text: str) -> set[int] | None:
    """moby pkg/parsers.ParseUintList: ``0-2,4``; None when malformed."""
    out: set[int] = set()
    for item in text.split(","):
        lo, sep, hi = item.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            return None
        if sep and int(hi) < int(lo):
            return None
        out.update(range(int(lo), int(hi) + 1) if sep else (int(lo),))
    return out


def _check_cpuset(value: str, kind: str, what: str, online_file: str) -> None:
    """verifyPlatformContainerResources: a cpuset must parse, and name only online CPUs/nodes."""
    if not value:
        return
    wanted = _uint_list(value)
    if wanted is None:
        raise InvalidArgument(f"Invalid value {value} for cpuset {kind}: invalid format: {value}")
    try:
        with open(online_file) as f:
            online_text = f.read().strip()
    except OSError:
        return
    online = _uint_list(online_text)
    if online is not None and not wanted <= online:
        raise InvalidArgument(f"Requested {what} are not available - requested {value}, available: {online_text}")


def _container_ref(mode: str) -> bool:
    return mode.startswith("container:") and mode.partition(":")[2] != ""


def _check_modes(hc: HostConfig) -> None:
    if hc.NetworkMode.startswith("container:") and not _container_ref(hc.NetworkMode):
        raise InvalidArgument("Invalid network mode: invalid container format container:<name|id>")
    if hc.IpcMode not in ("", "host", "private", "shareable", "none") and not _container_ref(hc.IpcMode):
        raise InvalidArgument(f"invalid IPC mode: {hc.IpcMode}")
    if hc.PidMode not in ("", "host") and not _container_ref(hc.PidMode):
        raise InvalidArgument(f"invalid PID mode: {hc.PidMode}")
    if hc.UTSMode not in ("", "host"):
        raise InvalidArgument(f"invalid UTS mode: {hc.UTSMode}")
    if hc.CgroupnsMode not in ("", "host", "private"):
        raise InvalidArgument(f"invalid cgroup namespace mode: {hc.CgroupnsMode}")


def check_extra_host(item: str) -> None:
    """moby opts.ValidateExtraHost."""
    name, sep, addr = item.partition("=")
    if not sep:
        name, sep, addr = item.partition(":")
    if not sep or not name or ":" in name:
        raise InvalidArgument(f"bad format for add-host: {json.dumps(item)}")
    if addr == "host-gateway":
        return
    if len(addr) > 2 and addr[0] == "[" and addr[-1] == "]":
        addr = addr[1:-1]
    try:
        ipaddress.ip_address(addr)
    except ValueError:
        raise InvalidArgument(f"invalid IP address in add-host: {json.dumps(addr)}") from None
