"""The values of berthd's configuration keys: each kind's JSON shape, each key's checks, and the
flags' ``k=v`` forms turned into the file's JSON form (``daemon.config`` owns the key table).

Every error is a ConfigError whose message names the key, e.g.
``invalid mtu 20: must be 0 or between 68 and 65535``.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
from typing import Any

from berth.engine import logdrivers
from berth.errors import InvalidArgument


class ConfigError(Exception):
    """A bad daemon.json or flag: berthd does not start (a SIGHUP keeps the old configuration)."""


# Docker's ulimit names (go-units) -> RLIMIT_*
ULIMITS = ("core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc",
           "rss", "rtprio", "rttime", "sigpending", "stack")
_SHAPES = {"str": "a string", "bool": "a boolean", "int": "an integer", "list": "an array of strings",
           "map": "an object of strings", "ulimits": "an object of ulimits", "runtimes": "an object of runtimes",
           "pools": "an array of pools", "size": "a size"}


def _bad(name: str, kind: str, v: Any) -> ConfigError:
    return ConfigError(f'invalid value for "{name}": expected {_SHAPES[kind]}, got {json.dumps(v)}')


def of_kind(name: str, kind: str, v: Any, nullable: bool) -> Any:
    """``v`` checked against its kind's JSON shape (and normalized: sizes to bytes)."""
    if v is None and nullable:
        return None
    ok = {
        "str": lambda: isinstance(v, str),
        "bool": lambda: isinstance(v, bool),
        "int": lambda: isinstance(v, int) and not isinstance(v, bool),
        "list": lambda: isinstance(v, list) and all(isinstance(x, str) for x in v),
        "map": lambda: isinstance(v, dict) and all(isinstance(x, str) for x in v.values()),
        "ulimits": lambda: isinstance(v, dict) and all(isinstance(x, dict) for x in v.values()),
        "runtimes": lambda: isinstance(v, dict) and all(isinstance(x, dict) for x in v.values()),
        "pools": lambda: isinstance(v, list) and all(isinstance(x, dict) for x in v),
        "size": lambda: isinstance(v, (str, int)) and not isinstance(v, bool),
    }[kind]
    if not ok():
        raise _bad(name, kind, v)
    if kind == "ulimits":
        return {n: _ulimit(name, n, u) for n, u in v.items()}
    if kind == "runtimes":
        return {n: _runtime(name, n, r) for n, r in v.items()}
    if kind == "pools":
        return [_pool(name, p) for p in v]
    if kind == "size":
        return _size(name, v)
    return v


def _size(name: str, v: str | int) -> int:
    try:
        n = v if isinstance(v, int) else logdrivers.ram_in_bytes(v)
    except InvalidArgument:
        n = -1
    if n <= 0:
        raise ConfigError(f'invalid value for "{name}": {json.dumps(v)} is not a positive size')
    return n


def _ulimit(name: str, key: str, u: dict[str, Any]) -> dict[str, Any]:
    n = u.get("Name", key)
    soft, hard = u.get("Soft"), u.get("Hard")
    if n not in ULIMITS or n != key:
        raise ConfigError(f'invalid value for "{name}": invalid ulimit type: {n}')
    if not isinstance(soft, int) or not isinstance(hard, int) or isinstance(soft, bool) or isinstance(hard, bool):
        raise ConfigError(f'invalid value for "{name}": ulimit {n} needs integer "Soft" and "Hard"')
    if soft > hard:
        raise ConfigError(f'invalid value for "{name}": ulimit soft limit must be less than or equal to hard '
                          f'limit: {soft} > {hard}')
    return {"Name": n, "Hard": hard, "Soft": soft}


def _runtime(name: str, key: str, r: dict[str, Any]) -> dict[str, Any]:
    if key == "berth":
        raise ConfigError(f'invalid value for "{name}": runtime name \'berth\' is reserved')
    path = r.get("path")
    args = r.get("runtimeArgs", [])
    if not isinstance(path, str) or not path:
        raise ConfigError(f'invalid value for "{name}": runtime {key} needs a "path"')
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise ConfigError(f'invalid value for "{name}": runtime {key}: "runtimeArgs" must be an array of strings')
    return {"path": path, **({"runtimeArgs": args} if args else {})}


def _pool(name: str, p: dict[str, Any]) -> dict[str, Any]:
    base, size = p.get("base"), p.get("size")
    try:
        net = ipaddress.IPv4Network(str(base))
    except ValueError:
        raise ConfigError(f'invalid value for "{name}": invalid base pool {json.dumps(base)}') from None
    if not isinstance(size, int) or isinstance(size, bool) or not net.prefixlen <= size <= 30:
        raise ConfigError(f'invalid value for "{name}": invalid pool size {json.dumps(size)} for {net} '
                          f"(between {net.prefixlen} and 30)")
    return {"base": str(net), "size": size}


# -- flags -> JSON form ---------------------------------------------------------------------


def _kv(s: str) -> tuple[str, str]:
    k, sep, v = s.partition("=")
    if not sep or not k:
        raise ValueError(f"{s!r} is not key=value")
    return k, v


def flag_map(items: list[str]) -> dict[str, str]:
    return dict(_kv(s) for s in items)


def flag_ulimits(items: list[str]) -> dict[str, dict[str, Any]]:
    """``nofile=1024:2048`` (or ``nofile=1024``) -> {"nofile": {"Name", "Soft", "Hard"}}."""
    out = {}
    for s in items:
        n, v = _kv(s)
        soft, _, hard = v.partition(":")
        if not re.fullmatch(r"-?\d+", soft) or (hard and not re.fullmatch(r"-?\d+", hard)):
            raise ValueError(f"invalid ulimit {s!r}")
        out[n] = {"Name": n, "Soft": int(soft), "Hard": int(hard or soft)}
    return out


def flag_runtimes(items: list[str]) -> dict[str, dict[str, Any]]:
    return {n: {"path": p} for n, p in map(_kv, items)}


def flag_pools(items: list[str]) -> list[dict[str, Any]]:
    """``base=10.10.0.0/16,size=24`` -> {"base": ..., "size": 24}."""
    out = []
    for s in items:
        fields = dict(_kv(f) for f in s.split(","))
        size = fields.get("size", "")
        if set(fields) != {"base", "size"} or not size.isdigit():
            raise ValueError(f"invalid pool {s!r}: want base=CIDR,size=N")
        out.append({"base": fields["base"], "size": int(size)})
    return out


# -- checks of one key ----------------------------------------------------------------------


def hosts(name: str, v: list[str]) -> list[str]:
    for h in v:
        if not re.match(r"(unix|tcp|fd|ssh)://", h):
            raise ConfigError(f'invalid value for "{name}": invalid bind address ({h}): unsupported protocol')
    return v


def labels(name: str, v: list[str]) -> list[str]:
    seen: dict[str, str] = {}
    for lab in v:
        k, sep, val = lab.partition("=")
        if not sep or not k:
            raise ConfigError(f"invalid label '{lab}': labels must be key=value pairs")
        if seen.get(k, val) != val:
            raise ConfigError(f"conflict labels for {k}: {seen[k]} and {val}")
        seen[k] = val
    return v


def non_negative(name: str, v: int) -> int:
    if v < 0:
        raise ConfigError(f'invalid value for "{name}": {v} is negative')
    return v


def positive(name: str, v: int) -> int:
    if v < 1:
        raise ConfigError(f"invalid {name} {v}: must be at least 1")
    return v


def host_port(name: str, v: str) -> str:
    if v and not re.fullmatch(r"(\[[0-9a-fA-F:.]+\]|[^:\s]*):\d{1,5}", v):
        raise ConfigError(f'invalid value for "{name}": {v!r} is not host:port')
    return v


def log_driver(name: str, v: str) -> str:
    if v not in logdrivers.DRIVERS:
        raise ConfigError(f"invalid {name}: no log driver named '{v}' is registered")
    return v


def bip(name: str, v: str) -> str:
    if v:
        try:
            iface = ipaddress.IPv4Interface(v)
        except ValueError:
            raise ConfigError(f'invalid value for "{name}": {v!r} is not an IPv4 address with a prefix') from None
        if "/" not in v or iface.ip in (iface.network.network_address, iface.network.broadcast_address) \
                or iface.network.prefixlen > 30:
            raise ConfigError(f'invalid value for "{name}": {v!r} must be a host address and a prefix of '
                              "at most /30 (192.168.1.5/24)")
    return v


def cidr4(name: str, v: str) -> str:
    if v:
        try:
            return str(ipaddress.IPv4Network(v, strict=False))
        except ValueError:
            raise ConfigError(f'invalid value for "{name}": {v!r} is not an IPv4 CIDR') from None
    return v


def cidr6(name: str, v: str) -> str:
    if v:
        try:
            ipaddress.IPv6Network(v, strict=False)
        except ValueError:
            raise ConfigError(f'invalid value for "{name}": {v!r} is not an IPv6 CIDR') from None
    return v


def mtu(name: str, v: int) -> int:
    if v and not 68 <= v <= 65535:
        raise ConfigError(f"invalid {name} {v}: must be 0 or between 68 and 65535")
    return v


def ips(name: str, v: list[str]) -> list[str]:
    for a in v:
        try:
            ipaddress.ip_address(a)
        except ValueError:
            raise ConfigError(f'invalid value for "{name}": {a} is not an ip address') from None
    return v


def mirrors(name: str, v: list[str]) -> list[str]:
    out = []
    for m in v:
        if not re.fullmatch(r"https?://[^/\s]+/?", m):
            raise ConfigError(f'invalid value for "{name}": invalid mirror: "{m}" is not a valid URI '
                              "(scheme http or https, no path)")
        out.append(m.rstrip("/"))
    return out


def exec_opts(name: str, v: list[str]) -> list[str]:
    for o in v:
        k, sep, val = o.partition("=")
        if k.strip() != "native.cgroupdriver" or not sep:
            raise ConfigError(f'invalid value for "{name}": unknown option {o!r} (berth knows native.cgroupdriver)')
        if val.strip() == "systemd":
            raise ConfigError(f'invalid value for "{name}": native.cgroupdriver=systemd is not supported: '
                              "berth manages cgroups itself (cgroupfs)")
        if val.strip() != "cgroupfs":
            raise ConfigError(f'invalid value for "{name}": native.cgroupdriver option {val} not supported')
    return v


def seccomp_profile(name: str, v: str) -> str:
    if v in ("", "builtin", "unconfined"):
        return v
    try:
        profile = json.loads(open(v).read())
    except OSError as e:
        raise ConfigError(f'invalid value for "{name}": opening seccomp profile ({v}) failed: {e.strerror}') from None
    except ValueError as e:
        raise ConfigError(f'invalid value for "{name}": decoding seccomp profile ({v}) failed: {e}') from None
    if not isinstance(profile, dict):
        raise ConfigError(f'invalid value for "{name}": decoding seccomp profile ({v}) failed: not an object')
    return v


def init_path(name: str, v: str) -> str:
    if v and ("\0" in v or not os.access(v, os.X_OK)):
        raise ConfigError(f'invalid value for "{name}": {v} is not an executable file')
    return v


def userns_remap(name: str, v: str) -> str:
    """dockerd's rule: ``default``, ``user`` or ``user:group`` (names or ids)."""
    user, _, group = v.partition(":")
    if v and (not user or ":" in group or (v.count(":") and not group)):
        raise ConfigError(f'invalid value for "{name}": {v!r} is not user, user:group or default')
    return v


def userns_default(name: str, v: str) -> str:
    mode, _, opts = v.partition(":")
    size = opts.removeprefix("size=")
    if v and (mode != "auto" or (opts and (not opts.startswith("size=") or not size.isdigit() or int(size) < 1))):
        raise ConfigError(f'invalid value for "{name}": {v!r} is not auto or auto:size=N')
    return v


# -- checks of several keys -----------------------------------------------------------------


def check_together(ns: argparse.Namespace) -> None:
    """What depends on more than one key: log-opts on log-driver, default-runtime on runtimes,
    fixed-cidr inside bip."""
    try:
        logdrivers.normalize(ns.log_driver, ns.log_opts)
    except InvalidArgument as e:
        raise ConfigError(f'invalid value for "log-opts": {e}') from None
    if ns.default_runtime not in ("berth", "runc") and ns.default_runtime not in ns.runtimes:
        raise ConfigError(f"specified default runtime '{ns.default_runtime}' does not exist")
    if ns.bip and ns.fixed_cidr:
        net = ipaddress.IPv4Interface(ns.bip).network
        if not ipaddress.IPv4Network(ns.fixed_cidr, strict=False).subnet_of(net):
            raise ConfigError(f'invalid value for "fixed-cidr": {ns.fixed_cidr} is not inside bip {ns.bip}')
