"""berthd's configuration: daemon.json and the flags, one table of keys (dockerd's names).

Every key of ``/etc/berth/daemon.json`` (or ``--config-file``) is also a flag; its argparse
dest is the key with ``-`` -> ``_`` (``fixed-cidr-v6`` -> ``args.fixed_cidr_v6``)::

    args = load(["--config-file", "/etc/berth/daemon.json", "--debug"])
    args.debug, args.log_opts, args.default_ulimits

A key given both ways, an unknown key, a bad value or a file that is not JSON raise
ConfigError, whose message names the key in dockerd's words. ``reload`` reads the file again
for SIGHUP: it returns the new values of the reloadable keys that changed.

Flags are converted to the file's JSON form first (``--log-opt max-size=10m`` ->
``{"max-size": "10m"}``), then both go through the same checks in ``config_values``.
"""

from __future__ import annotations

import argparse
import codecs
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from berth.daemon import config_values as values
from berth.daemon.config_values import ConfigError

__all__ = ["ConfigError", "DEFAULT_FILE", "KEYS", "Key", "load", "reload", "parser"]

DEFAULT_FILE = "/etc/berth/daemon.json"

# kind -> how a flag's raw strings become the file's JSON form
_FLAG_FORMS: dict[str, Callable[[Any], Any]] = {
    "map": values.flag_map, "ulimits": values.flag_ulimits, "runtimes": values.flag_runtimes,
    "pools": values.flag_pools,
}
_APPEND = ("list", "map", "ulimits", "runtimes", "pools")


class Key(NamedTuple):
    """One daemon.json key: its kind (the JSON shape), default, flags and help."""

    name: str
    kind: str                     # str bool int list map ulimits runtimes pools size
    default: Any
    flags: tuple[str, ...]
    help: str = ""
    reloadable: bool = False
    choices: tuple[str, ...] = ()
    check: Callable[[str, Any], Any] | None = None   # (key, value) -> stored value; raises ConfigError

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")


def _k(name: str, kind: str, default: Any, *flags: str, **kw: Any) -> Key:
    return Key(name, kind, default, flags or (f"--{name}",), **kw)


KEYS: tuple[Key, ...] = (
    # the daemon itself
    _k("data-root", "str", "/var/lib/berth", help="root of persistent berth state"),
    _k("exec-root", "str", "/run/berth", help="root of the berth execution state"),
    _k("hosts", "list", [], "-H", "--host", help="daemon socket(s) to listen on", check=values.hosts),
    _k("pidfile", "str", None, "-p", "--pidfile", help="path to use for the daemon PID file"),
    _k("group", "str", "docker", "-G", "--group", help="group for the unix socket"),
    _k("debug", "bool", False, "-D", "--debug", help="debug logging", reloadable=True),
    _k("log-level", "str", "info", "-l", "--log-level", choices=("debug", "info", "warn", "error", "fatal")),
    _k("labels", "list", [], "--label", help="key=value labels of this engine", reloadable=True,
       check=values.labels),
    _k("rootless", "bool", False, help="run in a user namespace of this user's (the default for a non-root "
       "user; docs: README, Rootless)"),
    _k("live-restore", "bool", True, help="keep containers running while berthd is down", reloadable=True),
    _k("cri", "bool", True, help="serve the Kubernetes CRI v1 (gRPC; needs the cri extra)"),
    _k("cri-socket", "str", "", help="the CRI socket (default: cri.sock under the exec root)"),
    _k("cri-stream-address", "str", "127.0.0.1:0",
       help="host:port of the CRI streaming server (exec, attach, port-forward URLs; port 0: any free one)"),
    _k("cri-stream-creation-timeout", "int", 30, check=values.non_negative,
       help="seconds a CRI streaming client has to open the streams of an exec, attach or port-forward "
       "(the kubelet's 30)"),
    _k("cni-conf-dir", "str", "/etc/cni/net.d", help="the CNI network configs of pods (the first by name is used)"),
    _k("cni-bin-dir", "str", "/usr/lib/cni", help="the CNI plugin binaries (several: separated by ':')"),
    _k("shutdown-timeout", "int", 15, reloadable=True,
       help="seconds to wait at least for the containers to stop at shutdown without live restore (longer: a "
       "container's stop timeout + 5; negative: as long as it takes)"),
    # remote access (the listener is the remote work's)
    _k("tls", "bool", None, help="use TLS; implied by --tlsverify"),
    _k("tlsverify", "bool", None, help="use TLS and verify the remote"),
    _k("tlscacert", "str", None, help="trust certs signed only by this CA"),
    _k("tlscert", "str", None, help="path to TLS certificate file"),
    _k("tlskey", "str", None, help="path to TLS key file"),
    _k("metrics-addr", "str", "", help="address to serve the metrics API on", check=values.host_port),
    # logs
    _k("log-driver", "str", "json-file", help="default driver for container logs", check=values.log_driver),
    _k("log-opts", "map", {}, "--log-opt", help="default log driver options (key=value)"),
    # networks
    _k("bip", "str", "", help="the default bridge's address and prefix (192.168.1.5/24)", check=values.bip),
    _k("default-address-pools", "pools", [], "--default-address-pool",
       help="pools for new networks (base=CIDR,size=N)"),
    _k("fixed-cidr", "str", "", help="IPv4 range of the default bridge's containers", check=values.cidr4),
    _k("ipv6", "bool", False, help="IPv6 on the default bridge (with fixed-cidr-v6)"),
    _k("fixed-cidr-v6", "str", "", help="IPv6 subnet of the default bridge", check=values.cidr6),
    _k("ip6tables", "bool", True, help="NAT and filter rules for IPv6 networks too"),
    _k("mtu", "int", 0, help="MTU of the default bridge's links", check=values.mtu),
    _k("dns", "list", [], help="DNS servers for containers", check=values.ips),
    _k("dns-search", "list", [], help="DNS search domains for containers"),
    _k("dns-opts", "list", [], "--dns-opt", help="DNS options for containers"),
    _k("iptables", "bool", True, help="berth writes NAT and filter rules (false: the firewall is left alone)"),
    _k("ip-forward", "bool", True, help="enable net.ipv4.ip_forward (and IPv6's, for IPv6 networks)"),
    _k("ip-masq", "bool", True, help="masquerade the default bridge's outbound traffic"),
    _k("icc", "bool", True, help="inter-container traffic on the default bridge"),
    _k("userland-proxy", "bool", True, help="accepted; berth publishes ports in the kernel (false)"),
    # registries
    _k("insecure-registries", "list", [], "--insecure-registry", reloadable=True,
       help="registries reached over HTTP or unverified TLS (host[:port] or CIDR)"),
    _k("registry-mirrors", "list", [], "--registry-mirror", reloadable=True, check=values.mirrors,
       help="preferred Docker Hub mirrors (URL)"),
    _k("max-concurrent-downloads", "int", 6, reloadable=True, check=values.positive,
       help="layers downloaded at once per pull"),
    _k("max-concurrent-uploads", "int", 5, reloadable=True, check=values.positive,
       help="layers uploaded at once per push"),
    # containers
    _k("default-ulimits", "ulimits", {}, "--default-ulimit", reloadable=True,
       help="default ulimits of containers (name=soft[:hard])"),
    _k("default-shm-size", "size", 64 << 20, help="default /dev/shm size of containers"),
    _k("default-ipc-mode", "str", "private", choices=("private", "shareable"),
       help="default IPC mode of containers (shareable: their /dev/shm can be joined)"),
    _k("default-cgroupns-mode", "str", "", choices=("", "host", "private"),
       help="default cgroup namespace mode (private on cgroup v2 hosts, host on v1)"),
    _k("cgroup-parent", "str", "", help="parent cgroup of containers (default /berth; relative: below berthd's own)"),
    _k("exec-opts", "list", [], "--exec-opt", help="runtime options (native.cgroupdriver=cgroupfs)",
       check=values.exec_opts),
    _k("seccomp-profile", "str", "", help="default seccomp profile (path, builtin or unconfined)",
       check=values.seccomp_profile),
    _k("no-new-privileges", "bool", False, help="no new privileges for containers by default"),
    _k("init", "bool", False, help="run an init inside containers by default"),
    _k("userns-remap", "str", "", help="one user namespace range for every container: user[:group] "
       "(their /etc/subuid and /etc/subgid lines) or default (the dockremap user's)", check=values.userns_remap),
    _k("userns-default", "str", "", help="the user namespace of new containers: auto[:size=N] (a range "
       "of its own) or empty (the host's)", check=values.userns_default),
    _k("init-path", "str", "", help="the docker-init (tini) binary", check=values.init_path),
    _k("runtimes", "runtimes", {}, "--add-runtime", reloadable=True,
       help="external OCI runtimes (NAME=PATH): runc, crun"),
    _k("default-runtime", "str", "berth", help="default runtime of containers (berth: berth's own)"),
)
BY_NAME = {k.name: k for k in KEYS}
RELOADABLE = tuple(k.name for k in KEYS if k.reloadable)


def parser() -> argparse.ArgumentParser:
    """berthd's flags: every key's (given flags only: unset ones stay absent), and the rest."""
    p = argparse.ArgumentParser(prog="berthd", description="berth: a Docker-compatible container engine")
    p.add_argument("--config-file", default=None, help=f"daemon configuration file (default {DEFAULT_FILE})")
    p.add_argument("-v", "--version", action="store_true")
    for k in KEYS:
        kw: dict[str, Any] = {"dest": k.dest, "default": argparse.SUPPRESS, "help": k.help}
        if k.kind == "bool":
            kw.update(nargs="?", const=True, type=_bool_flag, metavar="BOOL")
        elif k.kind in _APPEND:
            kw.update(action="append")
        elif k.kind == "int":
            kw.update(type=int)
        if k.choices:
            kw.update(choices=[c for c in k.choices if c])
        p.add_argument(*k.flags, **kw)
    return p


def _bool_flag(v: str) -> bool:
    """A boolean flag's value as Go's strconv.ParseBool reads it (dockerd's flags)."""
    if v in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if v in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean value {v!r}")


def load(argv: list[str] | None, defaults: dict[str, Any] | None = None,
         default_file: str = DEFAULT_FILE) -> argparse.Namespace:
    """The flags and the file, merged and checked: every key's dest is set; ``defaults``
    replaces keys' defaults (a rootless berthd's paths). Raises ConfigError."""
    ns = parser().parse_args(argv)
    flags = {k.name: _flag_form(k, getattr(ns, k.dest)) for k in KEYS if hasattr(ns, k.dest)}
    path = ns.config_file or default_file
    file = read_file(path, required=ns.config_file is not None)
    _check_conflicts(flags, file)
    merged = {**(defaults or {}), **file, **flags}
    for k in KEYS:
        setattr(ns, k.dest, check(k, merged[k.name]) if k.name in merged else _copy(k.default))
    ns.config_file = path
    ns.flag_keys = sorted(flags)
    values.check_together(ns)
    return ns


def reload(args: argparse.Namespace) -> dict[str, Any]:
    """SIGHUP: the file again. -> {key: new value} of the reloadable keys set in the file that
    changed (dockerd reloads only the keys the file sets); ``args`` is updated. Raises
    ConfigError (nothing changes then)."""
    file = read_file(args.config_file, required=False)
    flags = {name: getattr(args, BY_NAME[name].dest) for name in args.flag_keys}
    _check_conflicts(flags, file)
    changed: dict[str, Any] = {}
    for name in RELOADABLE:
        if name not in file:
            continue
        k = BY_NAME[name]
        new = check(k, file[name])
        if new != getattr(args, k.dest):
            changed[name] = new
    for name, v in changed.items():
        setattr(args, BY_NAME[name].dest, v)
    return changed


def read_file(path: str, required: bool) -> dict[str, Any]:
    """daemon.json's keys (a missing default file is an empty one). Raises ConfigError."""
    try:
        text = _decode(Path(path).read_bytes())
    except FileNotFoundError:
        if required:
            raise ConfigError(f"unable to configure the Docker daemon with file {path}: "
                              f"open {path}: no such file or directory") from None
        return {}
    except OSError as e:
        raise ConfigError(f"unable to configure the Docker daemon with file {path}: {e}") from None
    if not text.strip():
        return {}
    data = _json(text, path)
    if not isinstance(data, dict):
        raise ConfigError(f"unable to configure the Docker daemon with file {path}: "
                          "the configuration must be a JSON object")
    unknown = sorted(set(data) - set(BY_NAME))
    if unknown:
        raise ConfigError("the following directives don't match any configuration option: " + ", ".join(unknown))
    for name, v in data.items():
        check(BY_NAME[name], v)
    return data


def _decode(raw: bytes) -> str:
    """The file's text as dockerd reads it: a byte order mark picks UTF-8 or UTF-16, and bytes
    that are not UTF-8 become U+FFFD (Go's json does that in strings) instead of failing."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return raw.decode("utf-16", "replace")
    return raw.removeprefix(codecs.BOM_UTF8).decode("utf-8", "replace")


def _json(text: str, path: str) -> Any:
    """The decoded file: a number too long for an int, nesting deeper than Python's stack and
    bad JSON are all a ConfigError; lone surrogates (``"\\ud800"``) become U+FFFD, as in Go."""
    try:
        return _scrub(json.loads(text))
    except json.JSONDecodeError as e:
        why = f"{e.msg} (line {e.lineno}, column {e.colno})"
    except ValueError as e:  # an integer of more than sys.get_int_max_str_digits() digits
        why = str(e)
    except RecursionError:
        why = "exceeded max depth"
    raise ConfigError(f"unable to configure the Docker daemon with file {path}: {why}")


_SURROGATE = re.compile("[\ud800-\udfff]")


def _scrub(data: Any) -> Any:
    """``data`` with every string (keys too) made encodable, without recursion (any depth)."""
    def fix(v: Any) -> Any:
        return _SURROGATE.sub("\ufffd", v) if isinstance(v, str) else v

    box: list[Any] = [data]
    todo: list[list[Any] | dict[Any, Any]] = [box]
    while todo:
        c = todo.pop()
        if isinstance(c, dict):
            fixed = {fix(k): v for k, v in c.items()}
            c.clear()
            c.update(fixed)
        for k, v in (c.items() if isinstance(c, dict) else enumerate(c)):
            if isinstance(v, (list, dict)):
                todo.append(v)
            else:
                c[k] = fix(v)
    return box[0]


def check(k: Key, v: Any) -> Any:
    """``v`` (JSON form) as stored on the args. Raises ConfigError naming the key."""
    v = values.of_kind(k.name, k.kind, v, k.default is None)
    if k.choices and v not in k.choices:
        raise ConfigError(f"invalid {k.name} {v!r}: must be one of {', '.join(c for c in k.choices if c)}")
    return k.check(k.name, v) if k.check is not None else v


def _flag_form(k: Key, v: Any) -> Any:
    conv = _FLAG_FORMS.get(k.kind)
    try:
        return conv(v) if conv is not None else v
    except ValueError as e:
        raise ConfigError(f"invalid value for {k.flags[-1]}: {e}") from None


def _check_conflicts(flags: dict[str, Any], file: dict[str, Any]) -> None:
    both = [f"{name}: (from flag: {_go(flags[name])}, from file: {_go(file[name])})"
            for name in flags if name in file]
    if both:
        raise ConfigError("the following directives are specified both as a flag and in the configuration "
                          "file: " + ", ".join(both))


def _go(v: Any) -> str:
    """A value as dockerd prints it in that message (%v)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + " ".join(_go(x) for x in v) + "]"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{a}:{_go(b)}" for a, b in v.items()) + "]"
    return str(v)


def _copy(v: Any) -> Any:
    return json.loads(json.dumps(v)) if isinstance(v, (list, dict)) else v
