"""``volume create/ls/inspect/rm/prune``, with the docker CLI's flags and output."""

from __future__ import annotations

import sys

from berth.cli._common import confirm, filters_param, format_flag, inspect_each, kv_map, remove_each
from berth.cli._flags import Flag, Spec, UsageError
from berth.schema import human

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_LS = "table {{.Driver}}\t{{.Name}}"


class VolumeRow:
    HEADERS = {"Name": "VOLUME NAME", "Driver": "DRIVER", "Scope": "SCOPE", "Mountpoint": "MOUNTPOINT",
               "Labels": "LABELS"}

    def __init__(self, v: dict[str, Any]) -> None:
        self.v = v

    def Name(self) -> str:
        return self.v["Name"]

    def Driver(self) -> str:
        return self.v["Driver"]

    def Scope(self) -> str:
        return self.v.get("Scope", "local")

    def Mountpoint(self) -> str:
        return self.v.get("Mountpoint", "")

    def Labels(self) -> str:
        return ",".join(f"{k}={v}" for k, v in (self.v.get("Labels") or {}).items())


def spec_volume_create() -> Spec:
    return Spec("volume create [OPTIONS] [VOLUME]", "Create a volume", [
        Flag("driver", "d", "string", "Specify volume driver name", "local"),
        Flag("label", "", "list", "Set metadata for a volume"),
        Flag("name", "", "string", "Specify volume name", hidden=True),
        Flag("opt", "o", "list", "Set driver specific options"),
    ], aliases=("volume create",), max_args=1)


def run_volume_create(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    name = args[0] if args else opts["name"]
    if args and opts["name"] and opts["name"] != args[0]:
        raise UsageError("conflicting options: cannot specify a volume-name through both --name and as a "
                         "positional arg")
    v = cli.client.json("POST", "/volumes/create", json_body={
        "Name": name, "Driver": opts["driver"], "DriverOpts": kv_map(opts["opt"]), "Labels": kv_map(opts["label"])})
    sys.stdout.write(v["Name"] + "\n")
    return 0


def spec_volume_ls() -> Spec:
    return Spec("volume ls [OPTIONS]", "List volumes", [
        Flag("filter", "f", "list", "Provide filter values (e.g. \"dangling=true\")"),
        format_flag(),
        Flag("quiet", "q", "bool", "Only display volume names"),
    ], aliases=("volume ls", "volume list"), max_args=0)


def run_volume_ls(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    from berth.cli._formatter import render_rows

    filters = filters_param(opts["filter"])
    resp = cli.client.get_json("/volumes", {"filters": filters} if filters else None) or {}
    rows = [VolumeRow(v) for v in sorted(resp.get("Volumes") or [], key=lambda v: v["Name"])]
    fmt = "{{.Name}}" if opts["quiet"] else (opts["format"] or DEFAULT_LS)
    if fmt == "table":
        fmt = DEFAULT_LS
    sys.stdout.write(render_rows(fmt, rows, VolumeRow.HEADERS))
    return 0


def spec_volume_inspect() -> Spec:
    return Spec("volume inspect [OPTIONS] VOLUME [VOLUME...]", "Display detailed information on one or more volumes",
                [format_flag("f")], aliases=("volume inspect",), min_args=1)


def run_volume_inspect(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    return inspect_each(cli, opts["format"], [f"/volumes/{name}" for name in args])


def spec_volume_rm() -> Spec:
    return Spec("volume rm [OPTIONS] VOLUME [VOLUME...]", "Remove one or more volumes", [
        Flag("force", "f", "bool", "Force the removal of one or more volumes"),
    ], aliases=("volume rm", "volume remove"), min_args=1)


def run_volume_rm(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    return remove_each(cli, args, "/volumes/{}", {"force": "1"} if opts["force"] else None)


def spec_volume_prune() -> Spec:
    return Spec("volume prune [OPTIONS]", "Remove unused local volumes", [
        Flag("all", "a", "bool", "Remove all unused volumes, not just anonymous ones"),
        Flag("filter", "", "list", "Provide filter values (e.g. \"label=<label>\")"),
        Flag("force", "f", "bool", "Do not prompt for confirmation"),
    ], aliases=("volume prune",), max_args=0)


def run_volume_prune(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    if not opts["force"] and not confirm(
            "WARNING! This will remove anonymous local volumes not used by at least one container.\n"):
        return 0
    filters = filters_param(list(opts["filter"]) + (["all=true"] if opts["all"] else []))
    resp = cli.client.json("POST", "/volumes/prune", {"filters": filters} if filters else None)
    deleted = resp.get("VolumesDeleted") or []
    if deleted:
        sys.stdout.write("Deleted Volumes:\n" + "".join(f"{n}\n" for n in deleted) + "\n")

    sys.stdout.write(f"Total reclaimed space: {human.size(resp.get('SpaceReclaimed') or 0)}\n")
    return 0
