"""``network create/ls/inspect/rm/connect/disconnect/prune``, with the docker CLI's flags and
output."""

from __future__ import annotations

import json
import sys

from berth.cli._common import confirm, filters_param, format_flag, inspect_each, kv_map, remove_each
from berth.cli._flags import Flag, Spec, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_LS = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"


class NetworkRow:
    HEADERS = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE",
               "IPv6": "IPV6", "Internal": "INTERNAL", "Labels": "LABELS", "CreatedAt": "CREATED AT"}

    def __init__(self, n: dict[str, Any], trunc: bool) -> None:
        self.n, self.trunc = n, trunc

    def ID(self) -> str:
        return self.n["Id"][:12] if self.trunc else self.n["Id"]

    def Name(self) -> str:
        return self.n["Name"]

    def Driver(self) -> str:
        return self.n["Driver"]

    def Scope(self) -> str:
        return self.n.get("Scope", "local")

    def IPv6(self) -> str:
        return str(bool(self.n.get("EnableIPv6"))).lower()

    def Internal(self) -> str:
        return str(bool(self.n.get("Internal"))).lower()

    def Labels(self) -> str:
        return ",".join(f"{k}={v}" for k, v in (self.n.get("Labels") or {}).items())

    def CreatedAt(self) -> str:
        return self.n.get("Created", "")


def spec_network_create() -> Spec:
    return Spec("network create [OPTIONS] NETWORK", "Create a network", [
        Flag("attachable", "", "bool", "Enable manual container attachment"),
        Flag("aux-address", "", "list", "Auxiliary IPv4 or IPv6 addresses used by Network driver"),
        Flag("driver", "d", "string", "Driver to manage the Network", "bridge"),
        Flag("gateway", "", "list", "IPv4 or IPv6 Gateway for the master subnet"),
        Flag("internal", "", "bool", "Restrict external access to the network"),
        Flag("ip-range", "", "list", "Allocate container ip from a sub-range"),
        Flag("ipam-driver", "", "string", "IP Address Management Driver", "default"),
        Flag("ipam-opt", "", "list", "Set IPAM driver specific options"),
        Flag("ipv6", "", "bool", "Enable or disable IPv6 networking"),
        Flag("label", "", "list", "Set metadata on a network"),
        Flag("opt", "o", "list", "Set driver specific options"),
        Flag("subnet", "", "list", "Subnet in CIDR format that represents a network segment"),
    ], aliases=("network create",), min_args=1, max_args=1)


def run_network_create(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    subnets, gws, ranges = opts["subnet"], opts["gateway"], opts["ip_range"]
    if (gws or ranges) and not subnets:
        raise UsageError("every ip-range or gateway must have a corresponding subnet")
    config = []
    for i, subnet in enumerate(subnets):
        c: dict[str, Any] = {"Subnet": subnet}
        if i < len(ranges):
            c["IPRange"] = ranges[i]
        if i < len(gws):
            c["Gateway"] = gws[i]
        if opts["aux_address"] and i == 0:
            c["AuxiliaryAddresses"] = kv_map(opts["aux_address"])
        config.append(c)
    body = {"Name": args[0], "Driver": opts["driver"], "Internal": opts["internal"],
            "Attachable": opts["attachable"], "EnableIPv6": opts["ipv6"],
            "IPAM": {"Driver": opts["ipam_driver"], "Config": config, "Options": kv_map(opts["ipam_opt"])},
            "Options": kv_map(opts["opt"]), "Labels": kv_map(opts["label"])}
    resp = cli.client.json("POST", "/networks/create", json_body=body)
    sys.stdout.write(resp["Id"] + "\n")
    return 0


def spec_network_ls() -> Spec:
    return Spec("network ls [OPTIONS]", "List networks", [
        Flag("filter", "f", "list", "Provide filter values (e.g. \"driver=bridge\")"),
        format_flag(),
        Flag("no-trunc", "", "bool", "Do not truncate the output"),
        Flag("quiet", "q", "bool", "Only display network IDs"),
    ], aliases=("network ls", "network list"), max_args=0)


def run_network_ls(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    from berth.cli._formatter import render_rows

    filters = filters_param(opts["filter"])
    nets = cli.client.get_json("/networks", {"filters": filters} if filters else None) or []
    nets.sort(key=lambda n: n["Name"])
    rows = [NetworkRow(n, not opts["no_trunc"]) for n in nets]
    fmt = "{{.ID}}" if opts["quiet"] else (opts["format"] or DEFAULT_LS)
    if fmt == "table":
        fmt = DEFAULT_LS
    sys.stdout.write(render_rows(fmt, rows, NetworkRow.HEADERS))
    return 0


def spec_network_inspect() -> Spec:
    return Spec("network inspect [OPTIONS] NETWORK [NETWORK...]", "Display detailed information on one or more networks", [
        format_flag("f"), Flag("verbose", "v", "bool", "Verbose output for diagnostics"),
    ], aliases=("network inspect",), min_args=1)


def run_network_inspect(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    return inspect_each(cli, opts["format"], [f"/networks/{ref}" for ref in args])


def spec_network_rm() -> Spec:
    return Spec("network rm NETWORK [NETWORK...]", "Remove one or more networks", [
        Flag("force", "f", "bool", "Do not error if the network does not exist"),
    ], aliases=("network rm", "network remove"), min_args=1)


def run_network_rm(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    return remove_each(cli, args, "/networks/{}", ignore_missing=opts["force"])


def spec_network_connect() -> Spec:
    return Spec("network connect [OPTIONS] NETWORK CONTAINER", "Connect a container to a network", [
        Flag("alias", "", "list", "Add network-scoped alias for the container"),
        Flag("driver-opt", "", "list", "driver options for the network"),
        Flag("ip", "", "string", "IPv4 address (e.g., \"172.30.100.104\")"),
        Flag("ip6", "", "string", "IPv6 address (e.g., \"2001:db8::33\")"),
        Flag("link", "", "list", "Add link to another container"),
        Flag("link-local-ip", "", "list", "Add a link-local address for the container"),
    ], aliases=("network connect",), min_args=2, max_args=2)


def run_network_connect(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    ep: dict[str, Any] = {"Aliases": opts["alias"] or None, "Links": opts["link"] or None,
                          "DriverOpts": kv_map(opts["driver_opt"]) or None}
    if opts["ip"]:
        ep["IPAMConfig"] = {"IPv4Address": opts["ip"]}
    cli.client.json("POST", f"/networks/{args[0]}/connect", json_body={"Container": args[1], "EndpointConfig": ep})
    return 0


def spec_network_disconnect() -> Spec:
    return Spec("network disconnect [OPTIONS] NETWORK CONTAINER", "Disconnect a container from a network", [
        Flag("force", "f", "bool", "Force the container to disconnect from a network"),
    ], aliases=("network disconnect",), min_args=2, max_args=2)


def run_network_disconnect(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    cli.client.json("POST", f"/networks/{args[0]}/disconnect",
                    json_body={"Container": args[1], "Force": opts["force"]})
    return 0


def spec_network_prune() -> Spec:
    return Spec("network prune [OPTIONS]", "Remove all unused networks", [
        Flag("filter", "", "list", "Provide filter values (e.g. \"until=<timestamp>\")"),
        Flag("force", "f", "bool", "Do not prompt for confirmation"),
    ], aliases=("network prune",), max_args=0)


def run_network_prune(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    if not opts["force"] and not confirm(
            "WARNING! This will remove all custom networks not used by at least one container.\n"):
        return 0
    filters = filters_param(opts["filter"])
    resp = cli.client.json("POST", "/networks/prune", {"filters": filters} if filters else None)
    deleted = resp.get("NetworksDeleted") or []
    if deleted:
        sys.stdout.write("Deleted Networks:\n" + "".join(f"{n}\n" for n in deleted))
    return 0


_ = json
