"""pause, unpause, stats, events, diff, update, port (docker's flags and output)."""

from __future__ import annotations

import datetime
import json
import sys
import time

from berth.cli._common import filters_json, print_error, print_template
from berth.cli._flags import Flag, Spec, UsageError
from berth.cli._tabwriter import render
from berth.cli._units import bytes_size, human_size, mem_swap_bytes, nano_cpus, ram_in_bytes
from berth.client.api import APIError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _each(names: list[str], action: Any) -> int:
    failed = False
    for name in names:
        try:
            action(name)
        except APIError as exc:
            print_error(f"Error response from daemon: {exc.message}")
            failed = True
            continue
        sys.stdout.write(f"{name}\n")
    return 1 if failed else 0


def spec_pause() -> Spec:
    return Spec("pause CONTAINER [CONTAINER...]", "Pause all processes within one or more containers",
                aliases=("container pause", "pause"), min_args=1)


def run_pause(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    return _each(args, lambda n: cli.client.call("POST", f"/containers/{n}/pause"))


def spec_unpause() -> Spec:
    return Spec("unpause CONTAINER [CONTAINER...]", "Unpause all processes within one or more containers",
                aliases=("container unpause", "unpause"), min_args=1)


def run_unpause(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    return _each(args, lambda n: cli.client.call("POST", f"/containers/{n}/unpause"))


# -- diff / port ---------------------------------------------------------------------------

def spec_diff() -> Spec:
    return Spec("diff CONTAINER", "Inspect changes to files or directories on a container's filesystem",
                aliases=("container diff", "diff"), min_args=1, max_args=1)


def run_diff(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    for ch in cli.client.get_json(f"/containers/{args[0]}/changes") or []:
        sys.stdout.write(f"{'CAD'[ch['Kind']] if ch['Kind'] in (0, 1, 2) else '?'} {ch['Path']}\n")
    return 0


def spec_port() -> Spec:
    return Spec("port CONTAINER [PRIVATE_PORT[/PROTO]]", "List port mappings or a specific mapping for the container",
                aliases=("container port", "port"), min_args=1, max_args=2)


def run_port(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    info = cli.client.get_json(f"/containers/{args[0]}/json")
    ports = (info.get("NetworkSettings") or {}).get("Ports") or {}
    if len(args) == 2:
        port, _, proto = args[1].partition("/")
        key = f"{port}/{proto or 'tcp'}"
        bindings = ports.get(key)
        if not bindings:
            print_error(f"Error: No public port '{key}' published for {args[0]}")
            return 1
        for b in bindings:
            sys.stdout.write(f"{_hostport(b)}\n")
        return 0
    for key in sorted(ports, key=_port_key):
        for b in ports[key] or []:
            sys.stdout.write(f"{key} -> {_hostport(b)}\n")
    return 0


def _port_key(key: str) -> tuple[int, str]:
    port, _, proto = key.partition("/")
    return (int(port) if port.isdigit() else 0, proto)


def _hostport(b: dict[str, str]) -> str:
    ip = b.get("HostIp") or "0.0.0.0"
    return f"[{ip}]:{b.get('HostPort')}" if ":" in ip else f"{ip}:{b.get('HostPort')}"


# -- update --------------------------------------------------------------------------------------

def spec_update() -> Spec:
    return Spec("update [OPTIONS] CONTAINER [CONTAINER...]", "Update configuration of one or more containers", [
        Flag("blkio-weight", "", "int", "Block IO (relative weight), between 10 and 1000, or 0 to disable"),
        Flag("cpu-period", "", "int", "Limit CPU CFS (Completely Fair Scheduler) period"),
        Flag("cpu-quota", "", "int", "Limit CPU CFS (Completely Fair Scheduler) quota"),
        Flag("cpu-shares", "c", "int", "CPU shares (relative weight)"),
        Flag("cpus", "", "decimal", "Number of CPUs", convert=nano_cpus),
        Flag("cpuset-cpus", "", "string", "CPUs in which to allow execution (0-3, 0,1)"),
        Flag("cpuset-mems", "", "string", "MEMs in which to allow execution (0-3, 0,1)"),
        Flag("memory", "m", "bytes", "Memory limit", convert=ram_in_bytes),
        Flag("memory-reservation", "", "bytes", "Memory soft limit", convert=ram_in_bytes),
        Flag("memory-swap", "", "bytes", "Swap limit equal to memory plus swap: -1 to enable unlimited swap",
             convert=mem_swap_bytes),
        Flag("pids-limit", "", "int", "Tune container pids limit (set -1 for unlimited)"),
        Flag("restart", "", "string", "Restart policy to apply when a container exits"),
    ], aliases=("container update", "update"), min_args=1)


def run_update(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    from berth.cli._containeropts import _restart_policy
    changed = opts.get("_changed", set())
    body: dict[str, Any] = {}
    for flag, key in (("blkio_weight", "BlkioWeight"), ("cpu_period", "CpuPeriod"), ("cpu_quota", "CpuQuota"),
                      ("cpu_shares", "CpuShares"), ("cpus", "NanoCpus"), ("cpuset_cpus", "CpusetCpus"),
                      ("cpuset_mems", "CpusetMems"), ("memory", "Memory"),
                      ("memory_reservation", "MemoryReservation"), ("memory_swap", "MemorySwap"),
                      ("pids_limit", "PidsLimit")):
        if flag in changed or flag.replace("_", "-") in changed:
            body[key] = opts[flag]
    if opts["restart"]:
        try:
            body["RestartPolicy"] = _restart_policy(opts["restart"])
        except UsageError as e:
            print_error(e.message)
            return 125
    if not body:
        print_error("you must provide one or more flags when using this command")
        return 1
    failed = False
    for name in args:
        try:
            result = cli.client.json("POST", f"/containers/{name}/update", json_body=body)
        except APIError as exc:
            print_error(f"Error response from daemon: {exc.message}")
            failed = True
            continue
        for w in (result or {}).get("Warnings") or []:
            print_error(w)
        sys.stdout.write(f"{name}\n")
    if failed:
        return 1
    return 0


# -- events ----------------------------------------------------------------------------------------

def spec_events() -> Spec:
    return Spec("events [OPTIONS]", "Get real time events from the server", [
        Flag("filter", "f", "list", "Filter output based on conditions provided"),
        Flag("format", "", "string", "Format output using a custom template"),
        Flag("since", "", "string", "Show all events created since timestamp"),
        Flag("until", "", "string", "Stream events until this timestamp"),
    ], aliases=("system events", "events"), max_args=0)


def format_event(ev: dict[str, Any]) -> str:
    ns = int(ev.get("timeNano") or int(ev.get("time", 0)) * 10**9)
    t = datetime.datetime.fromtimestamp(ns // 10**9).astimezone()
    stamp = t.strftime("%Y-%m-%dT%H:%M:%S") + f".{ns % 10**9:09d}" + t.strftime("%z")
    stamp = stamp[:-2] + ":" + stamp[-2:]
    actor = ev.get("Actor") or {}
    attrs = actor.get("Attributes") or {}
    text = f"{stamp} {ev.get('Type')} {ev.get('Action')} {actor.get('ID', '')}"
    if attrs:
        text += " (" + ", ".join(f"{k}={attrs[k]}" for k in sorted(attrs)) + ")"
    return text


def run_events(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    params: dict[str, object] = {}
    if opts["since"]:
        params["since"] = opts["since"]
    if opts["until"]:
        params["until"] = opts["until"]
    try:
        f = filters_json(opts["filter"])
    except ValueError as e:
        print_error(str(e))
        return 125
    if f:
        params["filters"] = f
    resp = cli.client.request("GET", "/events", params)
    for line in resp.iter_lines():
        if not line.strip():
            continue
        ev = json.loads(line)
        if opts["format"]:
            if opts["format"] == "{{json .}}" or opts["format"] == "json":
                sys.stdout.write(json.dumps(ev) + "\n")
            else:
                print_template(opts["format"], ev)
        else:
            sys.stdout.write(format_event(ev) + "\n")
        sys.stdout.flush()
    return 0


# -- stats -----------------------------------------------------------------------------------------

def spec_stats() -> Spec:
    return Spec("stats [OPTIONS] [CONTAINER...]", "Display a live stream of container(s) resource usage statistics", [
        Flag("all", "a", "bool", "Show all containers (default shows just running)"),
        Flag("format", "", "string", "Format output using a custom template"),
        Flag("no-stream", "", "bool", "Disable streaming stats and only pull the first result"),
        Flag("no-trunc", "", "bool", "Do not truncate output"),
    ], aliases=("container stats", "stats"))


def stats_row(s: dict[str, Any], no_trunc: bool = False) -> dict[str, str]:
    """docker's stats formatter: CPU % from the cpu/precpu delta, memory minus inactive file."""
    cpu, pre = s.get("cpu_stats") or {}, s.get("precpu_stats") or {}
    cpu_delta = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - (pre.get("cpu_usage") or {}).get("total_usage", 0)
    sys_delta = (cpu.get("system_cpu_usage") or 0) - (pre.get("system_cpu_usage") or 0)
    ncpu = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or []) or 1
    cpu_pct = cpu_delta / sys_delta * ncpu * 100.0 if sys_delta > 0 and cpu_delta > 0 else 0.0
    mem = s.get("memory_stats") or {}
    st = mem.get("stats") or {}
    usage = mem.get("usage") or 0
    cache = st.get("total_inactive_file", st.get("inactive_file", 0))
    usage = usage - cache if cache < usage else usage
    limit = mem.get("limit") or 0
    mem_pct = usage / limit * 100.0 if limit else 0.0
    rx = tx = 0
    for n in (s.get("networks") or {}).values():
        rx += n.get("rx_bytes", 0)
        tx += n.get("tx_bytes", 0)
    rd = wr = 0
    for e in (s.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []:
        if (e.get("op") or "").lower() == "read":
            rd += e.get("value", 0)
        elif (e.get("op") or "").lower() == "write":
            wr += e.get("value", 0)
    cid = (s.get("id") or "")
    running = not (s.get("read") or "").startswith("0001")
    return {
        "Container": cid if no_trunc else cid[:12], "ID": cid if no_trunc else cid[:12],
        "Name": (s.get("name") or "").lstrip("/") or "--",
        "CPUPerc": f"{cpu_pct:.2f}%" if running else "--",
        "MemUsage": f"{bytes_size(usage)} / {bytes_size(limit)}" if running else "-- / --",
        "MemPerc": f"{mem_pct:.2f}%" if running else "--",
        "NetIO": f"{human_size(rx, 3)} / {human_size(tx, 3)}" if running else "-- / --",
        "BlockIO": f"{human_size(rd, 3)} / {human_size(wr, 3)}" if running else "-- / --",
        "PIDs": str((s.get("pids_stats") or {}).get("current", 0)) if running else "--",
    }


_STATS_HEADER = ("CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS")
_STATS_KEYS = ("ID", "Name", "CPUPerc", "MemUsage", "MemPerc", "NetIO", "BlockIO", "PIDs")


def _stats_table(rows: list[dict[str, str]], fmt: str) -> str:
    if fmt and fmt != "table":
        from berth.cli._template import Template
        if fmt.startswith("table "):
            fmt = fmt[6:]
        return "".join(Template(fmt).execute(r) + "\n" for r in rows)
    lines = ["\t".join(_STATS_HEADER)] + ["\t".join(r[k] for k in _STATS_KEYS) for r in rows]
    return render("\n".join(lines) + "\n")


def run_stats(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    client = cli.client
    names = list(args)
    if not names:
        names = [c["Id"] for c in client.get_json("/containers/json", {"all": opts["all"]} if opts["all"] else None)]
    if opts["no_stream"]:
        rows = []
        failed = False
        for n in names:
            try:
                s = client.get_json(f"/containers/{n}/stats", {"stream": "0"})
            except APIError as exc:
                print_error(f"Error response from daemon: {exc.message}")
                failed = True
                continue
            rows.append(stats_row(s, opts["no_trunc"]))
        sys.stdout.write(_stats_table(rows, opts["format"]))
        return 1 if failed else 0
    prev: dict[str, dict[str, Any]] = {}
    try:
        while True:
            rows = []
            for n in names:
                try:
                    s = client.get_json(f"/containers/{n}/stats", {"stream": "0", "one-shot": "1"})
                except APIError:
                    continue
                p = prev.get(n)
                if p is not None:
                    s["precpu_stats"] = p.get("cpu_stats")
                prev[n] = s
                rows.append(stats_row(s, opts["no_trunc"]))
            sys.stdout.write("\033[2J\033[H" + _stats_table(rows, opts["format"]))
            sys.stdout.flush()
            time.sleep(1)
    except KeyboardInterrupt:
        return 0
    _ = json
