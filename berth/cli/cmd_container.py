"""Container listing and output: ``ps``, ``logs``, ``top``."""

from __future__ import annotations

import datetime
import re
import sys
import time

from berth.cli._common import filters_param, format_flag, print_error
from berth.cli._flags import Flag, Spec, UsageError
from berth.cli._tabwriter import render
from berth.schema import stdcopy

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_PS = ("table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t"
              "{{.Ports}}\t{{.Names}}")

# -- ps -------------------------------------------------------------------------------------------


def spec_ps() -> Spec:
    return Spec("ps [OPTIONS]", "List containers", [
        Flag("all", "a", "bool", "Show all containers (default shows just running)"),
        Flag("filter", "f", "list", "Filter output based on conditions provided"),
        format_flag(),
        Flag("last", "n", "int", "Show n last created containers (includes all states)", -1),
        Flag("latest", "l", "bool", "Show the latest created container (includes all states)"),
        Flag("no-trunc", "", "bool", "Don't truncate output"),
        Flag("quiet", "q", "bool", "Only display container IDs"),
        Flag("size", "s", "bool", "Display total file sizes"),
    ], aliases=("container ls", "container list", "container ps", "ps"), max_args=0)


def run_ps(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    from berth.cli._formatter import ContainerRow, render_rows
    from berth.cli._template import TemplateError

    fmt = opts["format"]
    quiet = opts["quiet"]
    size = opts["size"] or (".Size" in fmt and not quiet)
    params: dict[str, object] = {"all": opts["all"], "size": size}
    limit = opts["last"]
    if opts["latest"] and limit == -1:
        limit = 1
    if limit != -1:
        params["limit"] = limit
        if limit > 0:
            params["all"] = True
    filters = filters_param(opts["filter"])
    if filters:
        params["filters"] = filters
    containers = cli.client.get_json("/containers/json", params) or []
    now = time.time()
    rows = [ContainerRow(c, not opts["no_trunc"], now) for c in containers]
    if quiet:
        fmt = "{{.ID}}"
    elif not fmt or fmt == "table":
        fmt = DEFAULT_PS + ("\t{{.Size}}" if opts["size"] else "")
    try:
        sys.stdout.write(render_rows(fmt, rows, ContainerRow.HEADERS))
    except TemplateError as exc:
        print_error(f"template parsing error: {exc}")
        return 1
    return 0


# -- logs -----------------------------------------------------------------------------------------


def spec_logs() -> Spec:
    return Spec("logs [OPTIONS] CONTAINER", "Fetch the logs of a container", [
        Flag("details", "", "bool", "Show extra details provided to logs"),
        Flag("follow", "f", "bool", "Follow log output"),
        Flag("since", "", "string", 'Show logs since timestamp (e.g. "2013-01-02T13:23:37Z") '
             'or relative (e.g. "42m" for 42 minutes)'),
        Flag("tail", "n", "string", "Number of lines to show from the end of the logs", "all"),
        Flag("timestamps", "t", "bool", "Show timestamps"),
        Flag("until", "", "string", 'Show logs before a timestamp (e.g. '
             '"2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42 minutes)'),
    ], aliases=("container logs", "logs"), min_args=1, max_args=1)


_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
                   "h": 3600.0}


def parse_go_duration(text: str) -> float | None:
    """Go's time.ParseDuration ("1h30m", "42m", "1.5s") in seconds, or None."""

    if not text or text in ("0",):
        return 0.0 if text == "0" else None
    parts = re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text.lstrip("+-"):
        return None
    total = sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
    return -total if text.startswith("-") else total


def timestamp_param(value: str, now: float | None = None) -> str:
    """docker's timetypes.GetTimestamp: durations are relative to now, dates become Unix time."""
    if not value:
        return value
    now = time.time() if now is None else now
    duration = parse_go_duration(value)
    if duration is not None:
        when = now - duration
        secs = int(when)
        return f"{secs}.{int(round((when - secs) * 1e9)):09d}"
    if value.replace(".", "", 1).isdigit():
        return value

    text = value.replace("Z", "+00:00")
    try:
        when_dt = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f'failed to parse value as time or duration: "{value}"') from None
    if when_dt.tzinfo is None:
        when_dt = when_dt.astimezone()
    stamp = when_dt.timestamp()
    secs = int(stamp)
    return f"{secs}.{int(round((stamp - secs) * 1e9)):09d}"


def run_logs(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    client = cli.client
    info = client.get_json(f"/containers/{args[0]}/json")
    tty = bool((info.get("Config") or {}).get("Tty"))
    params: dict[str, object] = {
        "stdout": True, "stderr": True, "follow": opts["follow"],
        "timestamps": opts["timestamps"], "details": opts["details"], "tail": opts["tail"],
    }
    if opts["since"]:
        params["since"] = timestamp_param(opts["since"])
    if opts["until"]:
        params["until"] = timestamp_param(opts["until"])
    resp = client.request("GET", f"/containers/{info['Id']}/logs", params)
    out, err = sys.stdout.buffer, sys.stderr.buffer

    def write_out(data: bytes) -> None:
        out.write(data)
        out.flush()

    def write_err(data: bytes) -> None:
        err.write(data)
        err.flush()

    if tty:
        for data in resp:
            write_out(data)
    else:
        try:
            stdcopy.copy(resp.read_chunk, write_out, write_err)
        except stdcopy.StreamError as exc:
            print_error(str(exc))
            return 1
    return 0


# -- top ------------------------------------------------------------------------------------------


def spec_top() -> Spec:
    return Spec("top CONTAINER [ps OPTIONS]", "Display the running processes of a container",
                aliases=("container top", "top"), min_args=1, interspersed=False)


def run_top(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    params = {"ps_args": " ".join(args[1:])} if len(args) > 1 else None
    result = cli.client.get_json(f"/containers/{args[0]}/top", params)
    lines = ["\t".join(result.get("Titles") or [])]
    lines += ["\t".join(proc) for proc in result.get("Processes") or []]
    sys.stdout.write(render("\n".join(lines) + "\n", minwidth=20))
    return 0
