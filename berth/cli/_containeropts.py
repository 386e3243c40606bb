"""``run``/``create`` flags and their translation into the ``POST /containers/create`` body.

The body has the same shape and defaults as the one docker CLI 28 sends (see
reference/wire/34-run-echo.md): every HostConfig field present, ``null`` where docker leaves a
slice nil, ``NetworkingConfig.EndpointsConfig`` keyed by the network mode.
"""

from __future__ import annotations

import os
import re

from berth.cli._common import kv_map
from berth.cli._flags import Flag, UsageError
from berth.cli._units import mem_swap_bytes, nano_cpus, ram_in_bytes

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _bytes(text: str) -> int:
    return ram_in_bytes(text)


CONTAINER_FLAGS = [
    Flag("add-host", "", "list", "Add a custom host-to-IP mapping (host:ip)"),
    Flag("attach", "a", "list", "Attach to STDIN, STDOUT or STDERR"),
    Flag("cap-add", "", "list", "Add Linux capabilities"),
    Flag("cap-drop", "", "list", "Drop Linux capabilities"),
    Flag("cgroup-parent", "", "string", "Optional parent cgroup for the container"),
    Flag("cgroupns", "", "string", "Cgroup namespace to use (host|private)"),
    Flag("cidfile", "", "string", "Write the container ID to the file"),
    Flag("cpu-period", "", "int", "Limit CPU CFS (Completely Fair Scheduler) period"),
    Flag("cpu-quota", "", "int", "Limit CPU CFS (Completely Fair Scheduler) quota"),
    Flag("cpu-shares", "c", "int", "CPU shares (relative weight)"),
    Flag("cpus", "", "decimal", "Number of CPUs", convert=nano_cpus),
    Flag("cpuset-cpus", "", "string", "CPUs in which to allow execution (0-3, 0,1)"),
    Flag("cpuset-mems", "", "string", "MEMs in which to allow execution (0-3, 0,1)"),
    Flag("dns", "", "list", "Set custom DNS servers"),
    Flag("dns-option", "", "list", "Set DNS options"),
    Flag("dns-search", "", "list", "Set custom DNS search domains"),
    Flag("domainname", "", "string", "Container NIS domain name"),
    Flag("entrypoint", "", "string", "Overwrite the default ENTRYPOINT of the image"),
    Flag("env", "e", "list", "Set environment variables"),
    Flag("env-file", "", "list", "Read in a file of environment variables"),
    Flag("expose", "", "list", "Expose a port or a range of ports"),
    Flag("group-add", "", "list", "Add additional groups to join"),
    Flag("health-cmd", "", "string", "Command to run to check health"),
    Flag("health-interval", "", "duration", "Time between running the check (ms|s|m|h) (default 0s)",
         convert=lambda t: _go_duration(t)),
    Flag("health-retries", "", "int", "Consecutive failures needed to report unhealthy"),
    Flag("health-start-period", "", "duration", "Start period for the container to initialize before "
         "starting health-retries countdown (ms|s|m|h) (default 0s)", convert=lambda t: _go_duration(t)),
    Flag("health-timeout", "", "duration", "Maximum time to allow one check to run (ms|s|m|h) (default 0s)",
         convert=lambda t: _go_duration(t)),
    Flag("hostname", "h", "string", "Container host name"),
    Flag("no-healthcheck", "", "bool", "Disable any container-specified HEALTHCHECK"),
    Flag("init", "", "bool", "Run an init inside the container that forwards signals and "
         "reaps processes"),
    Flag("interactive", "i", "bool", "Keep STDIN open even if not attached"),
    Flag("ipc", "", "string", "IPC mode to use"),
    Flag("label", "l", "list", "Set meta data on a container"),
    Flag("label-file", "", "list", "Read in a line delimited file of labels"),
    Flag("log-driver", "", "string", "Logging driver for the container"),
    Flag("log-opt", "", "list", "Log driver options"),
    Flag("memory", "m", "bytes", "Memory limit", convert=_bytes),
    Flag("memory-reservation", "", "bytes", "Memory soft limit", convert=_bytes),
    Flag("memory-swap", "", "bytes", "Swap limit equal to memory plus swap: '-1' to enable "
         "unlimited swap", convert=mem_swap_bytes),
    Flag("memory-swappiness", "", "int", "Tune container memory swappiness (0 to 100)", -1),
    Flag("name", "", "string", "Assign a name to the container"),
    Flag("ip", "", "string", "IPv4 address (e.g., 172.30.100.104)"),
    Flag("link", "", "list", "Add link to another container"),
    Flag("mac-address", "", "string", "Container MAC address (e.g., 92:d0:c6:0a:29:33)"),
    Flag("mount", "", "list", "Attach a filesystem mount to the container"),
    Flag("network", "", "network", "Connect a container to a network", convert=str),
    Flag("network-alias", "", "list", "Add network-scoped alias for the container"),
    Flag("oom-kill-disable", "", "bool", "Disable OOM Killer"),
    Flag("oom-score-adj", "", "int", "Tune host's OOM preferences (-1000 to 1000)"),
    Flag("pid", "", "string", "PID namespace to use"),
    Flag("pids-limit", "", "int", "Tune container pids limit (set -1 for unlimited)"),
    Flag("platform", "", "string", "Set platform if server is multi-platform capable"),
    Flag("privileged", "", "bool", "Give extended privileges to this container"),
    Flag("publish", "p", "list", "Publish a container's port(s) to the host"),
    Flag("publish-all", "P", "bool", "Publish all exposed ports to random ports"),
    Flag("pull", "", "string", 'Pull image before creating ("always", "missing", "never")',
         "missing"),
    Flag("quiet", "q", "bool", "Suppress the pull output"),
    Flag("read-only", "", "bool", "Mount the container's root filesystem as read only"),
    Flag("restart", "", "string", "Restart policy to apply when a container exits", "no"),
    Flag("rm", "", "bool", "Automatically remove the container and its associated anonymous "
         "volumes when it exits"),
    Flag("runtime", "", "string", "Runtime to use for this container"),
    Flag("security-opt", "", "list", "Security Options"),
    Flag("shm-size", "", "bytes", "Size of /dev/shm", convert=_bytes),
    Flag("stop-signal", "", "string", "Signal to stop the container"),
    Flag("stop-timeout", "", "int", "Timeout (in seconds) to stop a container"),
    Flag("sysctl", "", "list", "Sysctl options"),
    Flag("tmpfs", "", "list", "Mount a tmpfs directory"),
    Flag("tty", "t", "bool", "Allocate a pseudo-TTY"),
    Flag("user", "u", "string", "Username or UID (format: <name|uid>[:<group|gid>])"),
    Flag("userns", "", "string", "User namespace to use"),
    Flag("uts", "", "string", "UTS namespace to use"),
    Flag("volume", "v", "list", "Bind mount a volume"),
    Flag("volumes-from", "", "list", "Mount volumes from the specified container(s)"),
    Flag("workdir", "w", "string", "Working directory inside the container"),
]

RUN_ONLY_FLAGS = [
    Flag("detach", "d", "bool", "Run container in background and print container ID"),
    Flag("detach-keys", "", "string", "Override the key sequence for detaching a container"),
    Flag("sig-proxy", "", "bool", "Proxy received signals to the process", True),
]


def _read_kv_file(path: str, kind: str) -> list[str]:
    """docker's opts.ParseEnvFile: KEY=VALUE lines, '#' comments, bare KEY taken from env."""

    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        raise UsageError(f"open {path}: {(exc.strerror or str(exc)).lower()}") from None
    out = []
    for num, line in enumerate(lines, 1):
        line = line.lstrip()
        if not line or line.startswith("#"):
            continue
        key, eq, value = line.partition("=")
        if " " in key or "\t" in key:
            raise UsageError(f"variable '{key}' contains whitespaces")
        if not key:
            raise UsageError(f"no variable name on line '{line}'")
        if eq:
            out.append(line)
        elif kind == "env":
            if key in os.environ:
                out.append(f"{key}={os.environ[key]}")
        else:
            out.append(key)
    return out


def _go_duration(text: str) -> int:
    """A Go duration ("1m30s", "200ms") -> nanoseconds."""
    units = {"ns": 1, "us": 10**3, "µs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
    if text == "0":
        return 0
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise ValueError(f'time: invalid duration "{text}"')
    return int(sum(float(n) * units[u] for n, u in parts))


def _healthcheck(opts: dict[str, Any]) -> dict[str, Any] | None:
    if opts.get("no_healthcheck"):
        return {"Test": ["NONE"]}
    changed = opts.get("_changed", ())
    if not opts.get("health_cmd") and not any(k.startswith("health") for k in changed):
        return None
    hc: dict[str, Any] = {}
    if opts.get("health_cmd"):
        hc["Test"] = ["CMD-SHELL", opts["health_cmd"]]
    for flag, key in (("health_interval", "Interval"), ("health_timeout", "Timeout"),
                      ("health_start_period", "StartPeriod"), ("health_retries", "Retries")):
        if opts.get(flag):
            hc[key] = opts[flag]
    return hc


def _env_value(item: str) -> str | None:
    """-e KEY=VALUE is kept; -e KEY takes the value from the environment or is dropped."""

    if "=" in item:
        return item
    return f"{item}={os.environ[item]}" if item in os.environ else None


def _restart_policy(text: str) -> dict[str, Any]:
    name, _, count = text.partition(":")
    if name not in ("", "no", "always", "unless-stopped", "on-failure"):
        raise UsageError(f"invalid restart policy: {text}")
    retries = 0
    if count:
        if name != "on-failure":
            raise UsageError("invalid restart policy format: maximum retry count can only be "
                             "used with 'on-failure'")
        try:
            retries = int(count)
        except ValueError:
            raise UsageError(f"invalid restart policy format: {text}") from None
    return {"Name": name or "no", "MaximumRetryCount": retries}


def _ports(items: list[str], expose: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """-p [ip:][hostPort:]containerPort[/proto] and --expose into (ExposedPorts, PortBindings)."""
    exposed: dict[str, Any] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for item in expose:
        port, _, proto = item.partition("/")
        exposed[f"{port}/{proto or 'tcp'}"] = {}
    for item in items:
        spec, _, proto = item.partition("/")
        parts = spec.rsplit(":", 2) if not spec.startswith("[") else [spec]
        if len(parts) == 3:
            ip, host_port, cport = parts
        elif len(parts) == 2:
            ip, host_port, cport = "", parts[0], parts[1]
        else:
            ip, host_port, cport = "", "", parts[0]
        lo, _, hi = cport.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            raise UsageError(f'invalid containerPort: {cport}')
        cports = list(range(int(lo), int(hi or lo) + 1))
        hosts = [host_port] * len(cports)
        if len(cports) > 1 and host_port:
            hlo, _, hhi = host_port.partition("-")
            if not hlo.isdigit() or (hhi and not hhi.isdigit()) or int(hhi or hlo) - int(hlo) + 1 != len(cports):
                raise UsageError(f"invalid ranges specified for container and host Ports: {cport} and {host_port}")
            hosts = [str(int(hlo) + i) for i in range(len(cports))]
        for cp, hp in zip(cports, hosts):
            key = f"{cp}/{proto or 'tcp'}"
            exposed[key] = {}
            bindings.setdefault(key, []).append({"HostIp": ip.strip("[]"), "HostPort": hp})
    return exposed, bindings


def _mounts(items: list[str]) -> list[dict[str, Any]] | None:
    """--mount type=bind|volume|tmpfs,source=...,target=...[,readonly][,...] (docker's CSV)."""
    out = []
    for item in items:
        m: dict[str, Any] = {"Type": "volume"}
        idmap: bool | None = None
        for field in item.split(","):
            key, eq, value = field.partition("=")
            key = key.strip().lower()
            if key == "type":
                m["Type"] = value
            elif key in ("source", "src"):
                m["Source"] = value
            elif key in ("target", "destination", "dst"):
                m["Target"] = value
            elif key in ("readonly", "ro"):
                m["ReadOnly"] = value.lower() not in ("false", "0") if eq else True
            elif key == "bind-propagation":
                m.setdefault("BindOptions", {})["Propagation"] = value
            elif key == "volume-nocopy":
                m.setdefault("VolumeOptions", {})["NoCopy"] = value.lower() not in ("false", "0") if eq else True
            elif key == "volume-subpath":
                m.setdefault("VolumeOptions", {})["Subpath"] = value
            elif key == "volume-label":
                k, _, v = value.partition("=")
                m.setdefault("VolumeOptions", {}).setdefault("Labels", {})[k] = v
            elif key == "tmpfs-size":
                m.setdefault("TmpfsOptions", {})["SizeBytes"] = ram_in_bytes(value)
            elif key == "tmpfs-mode":
                m.setdefault("TmpfsOptions", {})["Mode"] = int(value, 8)
            elif key == "idmap":  # podman's: seen through the user namespace (idmap=false: as it is)
                idmap = value.lower() not in ("false", "0") if eq else True
            elif key in ("consistency", "bind-recursive", "bind-nonrecursive"):
                continue
            else:
                raise UsageError(f"invalid argument \"{item}\" for \"--mount\" flag: unexpected key '{key}' in '{field}'")
        if idmap is not None:
            if m["Type"] not in ("bind", "volume"):
                raise UsageError(f"invalid argument \"{item}\" for \"--mount\" flag: idmap is for bind and volume mounts")
            m.setdefault("BindOptions" if m["Type"] == "bind" else "VolumeOptions", {})["Idmap"] = idmap
        out.append(m)
    return out or None


def _volumes(items: list[str]) -> tuple[dict[str, Any], list[str] | None]:
    """-v: "dest" is an anonymous volume, "src:dest[:opts]" a bind."""
    volumes: dict[str, Any] = {}
    binds: list[str] = []
    for item in items:
        if ":" in item:
            binds.append(item)
        else:
            volumes[item] = {}
    return volumes, binds or None


def _tmpfs(items: list[str]) -> dict[str, str] | None:
    if not items:
        return None
    out = {}
    for item in items:
        path, _, options = item.partition(":")
        out[path] = options
    return out


def _endpoint() -> dict[str, Any]:
    return {
        "IPAMConfig": None, "Links": None, "Aliases": None, "MacAddress": "",
        "DriverOpts": None, "GwPriority": 0, "NetworkID": "", "EndpointID": "", "Gateway": "",
        "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0, "DNSNames": None,
    }


def build_create_body(opts: dict[str, Any], args: list[str], *, detach: bool = False,
                      console_size: tuple[int, int] = (0, 0)) -> dict[str, Any]:
    """The create request body for ``IMAGE [COMMAND] [ARG...]`` and parsed flags.

    Raises:
        UsageError: an invalid flag combination or value (docker exits 125).
    """
    image, cmd = args[0], args[1:]
    attach = [a.lower() for a in opts["attach"]]
    for stream in attach:
        if stream not in ("stdin", "stdout", "stderr"):
            raise UsageError(f"invalid argument \"{stream}\" for \"-a, --attach\" flag: valid "
                             f"streams are STDIN, STDOUT and STDERR")
    attach_stdin = "stdin" in attach or opts["interactive"]
    attach_stdout = "stdout" in attach or not attach
    attach_stderr = "stderr" in attach or not attach
    if detach:
        attach_stdin = attach_stdout = attach_stderr = False
    env: list[str] = []
    for path in opts["env_file"]:
        env.extend(_read_kv_file(path, "env"))
    env.extend(v for v in (_env_value(e) for e in opts["env"]) if v is not None)
    label_items: list[str] = []
    for path in opts["label_file"]:
        label_items.extend(_read_kv_file(path, "label"))
    label_items.extend(opts["label"])
    entrypoint = None
    if opts["entrypoint"]:
        entrypoint = [opts["entrypoint"]]
    elif "entrypoint" in opts.get("_changed", ()):
        entrypoint = [""]
    exposed, bindings = _ports(opts["publish"], opts["expose"])
    volumes, binds = _volumes(opts["volume"])
    network = opts["network"] or "default"
    memory = opts["memory"] or 0
    swap = opts["memory_swap"] or 0
    if swap > 0 and memory and swap < memory:
        raise UsageError("Minimum memoryswap limit should be larger than memory limit, see "
                         "usage")
    if opts["cpus"] and (opts["cpu_period"] or opts["cpu_quota"]):
        raise UsageError("Conflicting options: Nano CPUs and CPU Period cannot both be set")

    config: dict[str, Any] = {
        "Hostname": opts["hostname"],
        "Domainname": opts["domainname"],
        "User": opts["user"],
        "AttachStdin": attach_stdin,
        "AttachStdout": attach_stdout,
        "AttachStderr": attach_stderr,
    }
    if exposed:
        config["ExposedPorts"] = exposed
    config.update({
        "Tty": opts["tty"],
        "OpenStdin": opts["interactive"],
        "StdinOnce": bool(opts["interactive"] and attach_stdin),
        "Env": env or None,
        "Cmd": cmd or None,
        "Image": image,
        "Volumes": volumes,
        "WorkingDir": opts["workdir"],
        "Entrypoint": entrypoint,
        "OnBuild": None,
        "Labels": kv_map(label_items),
    })
    health = _healthcheck(opts)
    if health is not None:
        config["Healthcheck"] = health
    if opts["stop_signal"]:
        config["StopSignal"] = opts["stop_signal"]
    if "stop_timeout" in opts.get("_changed", ()):
        config["StopTimeout"] = opts["stop_timeout"]

    log_config = {"Type": opts["log_driver"], "Config": kv_map(opts["log_opt"])}
    host: dict[str, Any] = {
        "Binds": binds,
        "ContainerIDFile": opts["cidfile"],
        "LogConfig": log_config,
        "NetworkMode": network,
        "PortBindings": bindings,
        "RestartPolicy": _restart_policy(opts["restart"]),
        "AutoRemove": opts["rm"],
        "VolumeDriver": "",
        "VolumesFrom": opts["volumes_from"] or None,
        "ConsoleSize": list(console_size),
        "CapAdd": opts["cap_add"] or None,
        "CapDrop": opts["cap_drop"] or None,
        "CgroupnsMode": opts["cgroupns"],
        "Dns": opts["dns"],
        "DnsOptions": opts["dns_option"],
        "DnsSearch": opts["dns_search"],
        "ExtraHosts": opts["add_host"] or None,
        "GroupAdd": opts["group_add"] or None,
        "IpcMode": opts["ipc"],
        "Cgroup": "",
        "Links": opts["link"] or None,
        "OomScoreAdj": opts["oom_score_adj"],
        "PidMode": opts["pid"],
        "Privileged": opts["privileged"],
        "PublishAllPorts": opts["publish_all"],
        "ReadonlyRootfs": opts["read_only"],
        "SecurityOpt": opts["security_opt"] or None,
        "UTSMode": opts["uts"],
        "UsernsMode": opts["userns"],
        "ShmSize": opts["shm_size"] or 0,
    }
    sysctls = kv_map(opts["sysctl"])
    if sysctls:
        host["Sysctls"] = sysctls
    tmpfs = _tmpfs(opts["tmpfs"])
    if tmpfs:
        host["Tmpfs"] = tmpfs
    if opts["runtime"]:
        host["Runtime"] = opts["runtime"]
    if opts["init"]:
        host["Init"] = True
    host.update({
        "Isolation": "",
        "CpuShares": opts["cpu_shares"],
        "Memory": memory,
        "NanoCpus": opts["cpus"] or 0,
        "CgroupParent": opts["cgroup_parent"],
        "BlkioWeight": 0,
        "BlkioWeightDevice": [],
        "BlkioDeviceReadBps": [],
        "BlkioDeviceWriteBps": [],
        "BlkioDeviceReadIOps": [],
        "BlkioDeviceWriteIOps": [],
        "CpuPeriod": opts["cpu_period"],
        "CpuQuota": opts["cpu_quota"],
        "CpuRealtimePeriod": 0,
        "CpuRealtimeRuntime": 0,
        "CpusetCpus": opts["cpuset_cpus"],
        "CpusetMems": opts["cpuset_mems"],
        "Devices": [],
        "DeviceCgroupRules": None,
        "DeviceRequests": None,
        "MemoryReservation": opts["memory_reservation"] or 0,
        "MemorySwap": swap,
        "MemorySwappiness": opts["memory_swappiness"],
        "OomKillDisable": opts["oom_kill_disable"],
        "PidsLimit": opts["pids_limit"],
        "Ulimits": [],
        "CpuCount": 0,
        "CpuPercent": 0,
        "IOMaximumIOps": 0,
        "IOMaximumBandwidth": 0,
        "MaskedPaths": None,
        "ReadonlyPaths": None,
    })
    config["HostConfig"] = host
    mounts = _mounts(opts["mount"])
    if mounts:
        host["Mounts"] = mounts
    endpoint = _endpoint()
    if opts["ip"]:
        endpoint["IPAMConfig"] = {"IPv4Address": opts["ip"]}
    if opts["network_alias"]:
        endpoint["Aliases"] = opts["network_alias"]
    if opts["mac_address"]:
        endpoint["MacAddress"] = opts["mac_address"]
        config["MacAddress"] = opts["mac_address"]
    config["NetworkingConfig"] = {"EndpointsConfig": {network: endpoint}}
    return config
