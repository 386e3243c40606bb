"""/networks endpoints. Each handler parses, calls the engine, and shapes Docker's JSON."""

from __future__ import annotations

import functools
import json
from ipaddress import IPv4Network, IPv6Network
from typing import Any

import msgspec

from berth.api.app import App, Routes, no_content
from berth.api.filters import check_filters, labels_match, parse_filters, prune_labels_match
from berth.api.http import Request, Response
from berth.api.shape import json_response
from berth.engine.logs import parse_time
from berth.engine.model import Container
from berth.engine.networks import (Endpoint, IPAMConfig, IPAMRequest, Network, Networks, PortBinding, Sandbox,
                                   parse_port_key)
from berth.errors import InvalidArgument


# -- Docker's JSON --------------------------------------------------------------------------

def network_json(nets: Networks, n: Network, detailed: bool = True) -> dict[str, Any]:
    """A network as ``GET /networks/{id}`` shows it (the list leaves ``Containers`` empty)."""
    cfg: list[dict[str, Any]] = []
    if n.subnet:
        c: dict[str, Any] = {"Subnet": n.subnet}
        if n.ip_range:
            c["IPRange"] = n.ip_range
        c["Gateway"] = n.gateway
        user = next((x for x in n.ipam_config if x.Subnet), None)
        if user is not None and user.AuxiliaryAddresses:
            c["AuxiliaryAddresses"] = user.AuxiliaryAddresses
        cfg.append(c)
    if n.enable_ipv6 and n.subnet6:
        c6: dict[str, Any] = {"Subnet": n.subnet6}
        if n.ip_range6:
            c6["IPRange"] = n.ip_range6
        c6["Gateway"] = n.gateway6
        cfg.append(c6)
    containers: dict[str, Any] = {}
    if detailed:
        for cid, s in nets.sandboxes.items():
            e = s.endpoint(n.id)
            if e is None or not e.ip:
                continue
            info = nets.names(cid)
            containers[cid] = {"Name": info[0] if info else "", "EndpointID": e.endpoint_id,
                               "MacAddress": e.mac, "IPv4Address": f"{e.ip}/{prefix_len(n.subnet)}",
                               "IPv6Address": f"{e.ip6}/{IPv6Network(n.subnet6).prefixlen}" if e.ip6 else ""}
    return {"Name": n.name, "Id": n.id, "Created": n.created, "Scope": "local", "Driver": n.driver,
            "EnableIPv4": True, "EnableIPv6": n.enable_ipv6,
            "IPAM": {"Driver": n.ipam_driver, "Options": n.ipam_options if not n.predefined else None,
                     "Config": cfg},
            "Internal": n.internal, "Attachable": n.attachable, "Ingress": False,
            "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Containers": containers,
            "Options": n.options, "Labels": n.labels}


@functools.lru_cache(maxsize=1024)
def prefix_len(subnet: str) -> int:
    """A network's prefix length (parsing the subnet was a third of ``GET /containers/json``)."""
    return IPv4Network(subnet).prefixlen


def endpoint_json(nets: Networks, s: Sandbox | None, e: Endpoint | None, n: Network) -> dict[str, Any]:
    prefix = prefix_len(n.subnet) if (e and e.ip and n.subnet) else 0
    ip6 = e.ip6 if e and e.ip6 and n.subnet6 else ""
    ipam_cfg = {k: v for k, v in (("IPv4Address", e.ipv4 if e else ""), ("IPv6Address", e.ipv6 if e else "")) if v}
    return {"IPAMConfig": ipam_cfg or None,
            "Links": (e.links or None) if e else None, "Aliases": (e.aliases or None) if e else None,
            # Not running: the configured MAC (dockerd's DesiredMacAddress) shows.
            "MacAddress": (e.mac or e.mac_req) if e else "", "DriverOpts": e.driver_opts if e else None,
            "GwPriority": e.gw_priority if e else 0, "NetworkID": n.id, "EndpointID": e.endpoint_id if e else "",
            "Gateway": n.gateway if e and e.ip else "", "IPAddress": e.ip if e else "",
            "IPPrefixLen": prefix, "IPv6Gateway": n.gateway6 if ip6 else "", "GlobalIPv6Address": ip6,
            "GlobalIPv6PrefixLen": IPv6Network(n.subnet6).prefixlen if ip6 else 0,
            "DNSNames": _dns_names(nets, s, e, n)}


def _dns_names(nets: Networks, s: Sandbox | None, e: Endpoint | None, n: Network) -> list[str] | None:
    if s is None or e is None or not n.user_defined:
        return None
    info = nets.names(s.container_id)
    out = ([info[0]] if info else []) + list(e.aliases) + [s.container_id[:12]]
    return list(dict.fromkeys(out))


def networks_json(nets: Networks, c: Container, s: Sandbox | None) -> dict[str, Any]:
    """NetworkSettings.Networks: the container's endpoints by network name (``s``: its sandbox)."""
    endpoints: dict[str, Any] = {}
    if s is not None and (s.endpoints or s.pending):
        for e in s.endpoints:
            n = nets.nets.get(e.network_id)
            if n is not None:
                endpoints[n.name] = endpoint_json(nets, s, e, n)
        for name, cfg in s.pending.items():  # named at create, not there yet: as the client sent it
            endpoints[name] = _pending_json(cfg)
        return endpoints
    mode = "bridge" if c.host_config.NetworkMode == "default" else c.host_config.NetworkMode
    if mode in ("host", "none"):
        n = nets.get(mode)
        endpoints[n.name] = endpoint_json(nets, s, None, n)
    return endpoints


def _pending_json(cfg: dict[str, Any]) -> dict[str, Any]:
    ipam = {k: v for k, v in (cfg.get("IPAMConfig") or {}).items() if k in ("IPv4Address", "IPv6Address") and v}
    return {"IPAMConfig": ipam or None, "Links": cfg.get("Links") or None, "Aliases": cfg.get("Aliases") or None,
            "MacAddress": cfg.get("MacAddress") or "", "DriverOpts": cfg.get("DriverOpts") or None,
            "GwPriority": cfg.get("GwPriority") or 0, "NetworkID": "", "EndpointID": "", "Gateway": "",
            "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0, "DNSNames": None}


def settings_json(nets: Networks, c: Container) -> dict[str, Any]:
    """A container's NetworkSettings in inspect (and, with fewer fields, in the list)."""
    exposed = c.config.ExposedPorts
    s = nets.sandbox(c.id)
    endpoints = networks_json(nets, c, s)
    running = c.id in nets.running
    primary = s.endpoints[0] if s and s.endpoints else None
    pn = nets.nets.get(primary.network_id) if primary else None
    out: dict[str, Any] = {
        "Bridge": "", "SandboxID": s.sandbox_id if s and running else "", "HairpinMode": False,
        "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
        "Ports": _port_map(s.ports if s else [], exposed) if running or (s and s.ports) else {},
        "SandboxKey": s.ns_path if s and s.ns_path else "", "SecondaryIPAddresses": None,
        "SecondaryIPv6Addresses": None, "EndpointID": "", "Gateway": "", "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0, "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "",
        "Networks": endpoints,
    }
    if primary is not None and pn is not None and pn.name == "bridge" and primary.ip:
        out.update({"EndpointID": primary.endpoint_id, "Gateway": pn.gateway, "IPAddress": primary.ip,
                    "IPPrefixLen": prefix_len(pn.subnet), "MacAddress": primary.mac})
        if primary.ip6 and pn.subnet6:
            out.update({"GlobalIPv6Address": primary.ip6, "GlobalIPv6PrefixLen": IPv6Network(pn.subnet6).prefixlen,
                        "IPv6Gateway": pn.gateway6})
    return out


def _port_map(bindings: list[PortBinding], exposed: dict[str, Any] | None) -> dict[str, Any]:
    """NetworkSettings.Ports: every exposed or published port, with its host bindings."""
    out: dict[str, list[dict[str, str]] | None] = {}
    for key in exposed or {}:
        cport, proto = parse_port_key(key)
        out[f"{cport}/{proto}"] = None
    for b in bindings:
        key = f"{b.container_port}/{b.proto}"
        out[key] = (out.get(key) or []) + [{"HostIp": b.host_ip or "0.0.0.0", "HostPort": str(b.host_port)}]
    return out


def ports_json(nets: Networks, c: Container, s: Sandbox | None) -> list[dict[str, Any]]:
    """The container list's ``Ports`` (``s``: its sandbox)."""
    out: list[dict[str, Any]] = []
    bound = set()
    if s is not None and c.id in nets.running:
        for p in s.ports:
            bound.add(f"{p.container_port}/{p.proto}")
            out.append({"IP": p.host_ip or "0.0.0.0", "PrivatePort": p.container_port,
                        "PublicPort": p.host_port, "Type": p.proto})
    for key in c.config.ExposedPorts or {}:
        try:
            cport, proto = parse_port_key(key)
        except InvalidArgument:
            continue
        if f"{cport}/{proto}" not in bound:
            out.append({"PrivatePort": cport, "Type": proto})
    return out


# -- handlers -------------------------------------------------------------------------------

def _body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw or b"{}")
    except ValueError as e:
        raise InvalidArgument(f"invalid JSON: {e}") from None
    if not isinstance(body, dict):
        raise InvalidArgument("invalid JSON: expected an object")
    return body


def _ipam(raw: Any) -> IPAMRequest:
    """Docker's IPAM object of a network create."""
    raw = raw or {}
    return IPAMRequest(driver=raw.get("Driver") or "default", options=raw.get("Options") or {},
                       config=[msgspec.convert(c, IPAMConfig) for c in (raw.get("Config") or [])])


def matches(nets: Networks, n: Network, filters: dict[str, list[str]]) -> bool:
    for key, vals in filters.items():
        if key == "name":
            if not any(v in n.name for v in vals):
                return False
        elif key == "id":
            if not any(n.id.startswith(v) for v in vals):
                return False
        elif key == "driver":
            if n.driver not in vals:
                return False
        elif key == "label":
            if not labels_match(n.labels, vals):
                return False
        elif key == "type":
            for v in vals:
                if v not in ("custom", "builtin"):
                    raise InvalidArgument(f"invalid filter: 'type'='{v}'")
            if ("custom" in vals) != n.user_defined and ("builtin" in vals) == n.user_defined:
                return False
        elif key == "dangling":
            want = vals[0] in ("true", "1")
            if want != (not nets.containers_on(n) and n.user_defined):
                return False
        elif key == "scope":
            if "local" not in vals:
                return False
        elif key == "until":
            continue
        else:
            raise InvalidArgument(f"invalid filter '{key}'")
    return True


async def list_networks(app: App, req: Request) -> Response:
    nets = app.networks
    filters = parse_filters(req)
    return json_response([network_json(nets, n, detailed=False) for n in nets.list() if matches(nets, n, filters)])


async def inspect(app: App, req: Request) -> Response:
    return json_response(network_json(app.networks, app.networks.get(req.match["id"])))


async def create(app: App, req: Request) -> Response:
    b = _body(await req.read())
    if req.version_at_least("1.48") and b.get("EnableIPv4") is False:
        # 1.48 lets a network go without IPv4; berth's networks always have it (IPv6-only is not done).
        raise InvalidArgument("IPv4 or IPv6 must be enabled" if not b.get("EnableIPv6") else
                              "IPv6-only networks are not supported by berth")
    n = await app.networks.create(b.get("Name") or "", driver=b.get("Driver") or "bridge",
                                  internal=bool(b.get("Internal")), attachable=bool(b.get("Attachable")),
                                  labels=b.get("Labels") or {}, options=b.get("Options") or {},
                                  ipam=_ipam(b.get("IPAM")), enable_ipv6=bool(b.get("EnableIPv6")))
    return json_response({"Id": n.id, "Warning": ""}, 201)


async def delete(app: App, req: Request) -> Response:
    await app.networks.remove(req.match["id"])
    return no_content()


async def connect(app: App, req: Request) -> Response:
    b = _body(await req.read())
    c = app.containers.get(b.get("Container") or "")
    pid = c.state.pid if c.running else 0
    await app.networks.connect(req.match["id"], app.attachments.view(c), b.get("EndpointConfig"), pid)
    return Response(200, b"", content_type=None)


async def disconnect(app: App, req: Request) -> Response:
    b = _body(await req.read())
    ref = b.get("Container") or ""
    try:
        cid = app.containers.get(ref).id
    except Exception:
        if not b.get("Force"):
            raise
        cid = ref
    await app.networks.disconnect(req.match["id"], cid, bool(b.get("Force")))
    return Response(200, b"", content_type=None)


async def prune(app: App, req: Request) -> Response:
    filters = parse_filters(req)
    check_filters(filters, ("label", "label!", "until"))
    until = parse_time(filters["until"][0]) if "until" in filters else None

    def keep(n: Network) -> bool:
        if until is not None and (parse_time(n.created) or 0) >= until:
            return True
        return not prune_labels_match(n.labels, filters)

    deleted = await app.networks.prune(keep)
    app.events.emit("network", "prune", "", {"reclaimed": "0"})  # dockerd's, always 0
    return json_response({"NetworksDeleted": deleted})


ROUTES: Routes = [
    ("GET", "/networks", list_networks),
    ("POST", "/networks/create", create),
    ("POST", "/networks/prune", prune),
    ("GET", "/networks/{id}", inspect),
    ("DELETE", "/networks/{id}", delete),
    ("POST", "/networks/{id}/connect", connect),
    ("POST", "/networks/{id}/disconnect", disconnect),
]
