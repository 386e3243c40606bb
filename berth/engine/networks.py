"""Networks: records, IPAM, and each container's sandbox (its endpoints and published ports).

Vocabulary: a *network* is a record (bridge, host or null driver); a bridge network is one
Linux bridge. A container's *sandbox* is its network namespace and what berth put in it; an
*endpoint* is the container's attachment to one network (a veth pair and an address).

Lifecycle, driven by ``engine.containers``::

    prepare(c, req)          create: check the mode and networks, record endpoint configs
    begin_start(c, files)    start, before the shim: allocate addresses, bind host ports,
                             write hosts/resolv.conf; -> the netns for the spec
    attach(c, pid)           start, after the shim made the (blocked) init: veths into
                             /proc/<pid>/ns/net, the DNS socket, the NAT rules
    release(c)               the container exited (or its start failed)
    forget(c)                the container was removed
    recover(running)         berthd start: bridges, rules, DNS sockets and port sockets again

The kernel objects (bridges, namespaces, veths, NAT rules, DNS sockets) are made by
``network.sandbox``; Docker's JSON for all this is shaped in ``api.networks``. The kernel
objects are recreated from these records; addresses and the IPAM cursor live in
SQLite, so a restart never hands out an address that a running container holds.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import re
import secrets
import socket
import time
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import msgspec

from berth.errors import Conflict, InvalidArgument, NotFound, PermissionDenied, RuntimeFailure
from berth.network import etcfiles, forward, ipam, nat, ports
from berth.network.ports import parse_port_key as parse_port_key  # for api/: Docker's port keys
from berth.network.sandbox import Kernel, Plug, table_name, veth_name
from berth.network.sandbox import instance_of as instance_of  # daemon/ names a berthd's objects with it
from berth.state.atomic import write_atomic
from berth.state.db import Database

log = logging.getLogger("berth.network")

SCHEMA = """
CREATE TABLE IF NOT EXISTS networks (
    id   TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    data BLOB NOT NULL              -- msgspec JSON of engine.networks.Network
);
CREATE TABLE IF NOT EXISTS sandboxes (
    container_id TEXT PRIMARY KEY,
    data BLOB NOT NULL              -- msgspec JSON of engine.networks.Sandbox
);
"""

PREDEFINED = ("bridge", "host", "none")
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")


class NoSuchNetwork(NotFound):
    pass


def _now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


class IPAMConfig(msgspec.Struct, omit_defaults=True):
    Subnet: str = ""
    IPRange: str = ""
    Gateway: str = ""
    AuxiliaryAddresses: dict[str, str] | None = None


class Network(msgspec.Struct):
    id: str
    name: str
    driver: str                      # bridge | host | null
    created: str
    internal: bool = False
    attachable: bool = False
    ingress: bool = False
    labels: dict[str, str] = {}
    options: dict[str, str] = {}
    ipam_driver: str = "default"
    ipam_options: dict[str, str] | None = None
    ipam_config: list[IPAMConfig] = []
    user_subnet: bool = False        # --subnet given: --ip is allowed
    subnet: str = ""
    gateway: str = ""
    ip_range: str = ""
    aux: list[str] = []
    bridge: str = ""
    cursor: int = 0
    predefined: bool = False

    @property
    def is_bridge(self) -> bool:
        return self.driver == "bridge"

    @property
    def user_defined(self) -> bool:
        return not self.predefined


class Endpoint(msgspec.Struct):
    network_id: str
    aliases: list[str] = []
    links: list[str] = []
    ipv4: str = ""                   # requested (--ip)
    mac_req: str = ""                # requested (--mac-address)
    driver_opts: dict[str, str] | None = None
    gw_priority: int = 0             # API 1.48: the highest provides the default route
    endpoint_id: str = ""
    ip: str = ""                     # allocated while running
    mac: str = ""
    ifname: str = ""
    host_if: str = ""


class PortBinding(msgspec.Struct):
    proto: str
    container_port: int
    host_ip: str
    host_port: int


class Sandbox(msgspec.Struct):
    container_id: str
    mode: str                        # "bridge-like" network id mode, "host", "none", "container:<id>"
    endpoints: list[Endpoint] = []
    ports: list[PortBinding] = []
    ns_path: str = ""
    sandbox_id: str = ""
    upstreams: list[str] = []

    def endpoint(self, network_id: str) -> Endpoint | None:
        for e in self.endpoints:
            if e.network_id == network_id:
                return e
        return None


_enc = msgspec.json.Encoder()
_dec_net = msgspec.json.Decoder(Network)
_dec_sb = msgspec.json.Decoder(Sandbox)


class ContainerView(msgspec.Struct):
    """What this module needs to know of a container (engine.containers passes it)."""

    id: str
    name: str
    hostname: str
    domainname: str
    network_mode: str
    port_bindings: dict[str, Any] | None
    exposed: dict[str, Any] | None
    publish_all: bool
    dns: list[str]
    dns_search: list[str]
    dns_options: list[str]
    extra_hosts: list[str]
    links: list[str]
    mac: str = ""


class Networks:
    def __init__(self, db: Database, data_root: Path, instance: str,
                 emit: Callable[[str, str, str, dict[str, str]], object] | None = None):
        self.db = db
        self.data_root = data_root
        self.instance = instance        # "" for the default data root; else a short hash
        self.table = table_name(instance)
        self.forward_tag = forward.chain_name(self.table)
        self._forward_bridges: frozenset[str] | None = None   # what forward.sync last got
        self.default_bridge = "berth0" if not instance else f"berth{instance}"[:15]
        self.emit = emit or (lambda *a: None)
        db.conn.executescript(SCHEMA)
        self.nets: dict[str, Network] = {}
        self.sandboxes: dict[str, Sandbox] = {}
        for _, n in db.rows("networks", "id", _dec_net.decode):
            self.nets[n.id] = n
        for _, s in db.rows("sandboxes", "container_id", _dec_sb.decode):
            self.sandboxes[s.container_id] = s
        self._ensure_predefined()
        self.port_sockets: dict[str, list[socket.socket]] = {}
        self.running: set[str] = set()          # containers whose endpoints are live
        self.names: Callable[[str], tuple[str, str] | None] = lambda cid: None  # -> (name, hostname)
        self.pid_of: Callable[[str], int] = lambda cid: 0
        self.kernel = Kernel(data_root, self.resolve)   # bridges, namespaces, veths, DNS sockets
        self._rules_lock = asyncio.Lock()
        self._ready = False
        # Start in progress: a namespace made by berthd (held by an fd) and the task plugging
        # its endpoints in, which runs while the shim is spawned; attach() waits for it.
        self.pending: dict[str, tuple[int, asyncio.Task[None]]] = {}

    # -- records ----------------------------------------------------------------------------

    def _ensure_predefined(self) -> None:
        have = {n.name for n in self.nets.values()}
        for name, driver in (("bridge", "bridge"), ("host", "host"), ("none", "null")):
            if name not in have:
                n = Network(id=secrets.token_hex(32), name=name, driver=driver, created=_now(), predefined=True)
                if name == "bridge":
                    n.bridge = self.default_bridge
                    n.options = {"com.docker.network.bridge.default_bridge": "true",
                                 "com.docker.network.bridge.enable_icc": "true",
                                 "com.docker.network.bridge.enable_ip_masquerade": "true",
                                 "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
                                 "com.docker.network.bridge.name": self.default_bridge,
                                 "com.docker.network.driver.mtu": "1500"}
                self._save_net(n)

    def _save_net(self, n: Network) -> None:
        with self.db.tx() as tx:
            tx.execute("INSERT OR REPLACE INTO networks VALUES (?,?,?)", (n.id, n.name, _enc.encode(n)))
        self.nets[n.id] = n

    def _save_sb(self, s: Sandbox) -> None:
        with self.db.tx() as tx:
            tx.execute("INSERT OR REPLACE INTO sandboxes VALUES (?,?)", (s.container_id, _enc.encode(s)))
        self.sandboxes[s.container_id] = s

    def get(self, ref: str) -> Network:
        """By full ID, name, or unique ID prefix (Docker's order)."""
        n = self.nets.get(ref)
        if n is not None:
            return n
        for n in self.nets.values():
            if n.name == ref:
                return n
        found = [n for n in self.nets.values() if ref and n.id.startswith(ref)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise InvalidArgument(f"network {ref} is ambiguous ({len(found)} matches found based on ID prefix)")
        raise NoSuchNetwork(f"network {ref} not found")

    def by_name(self, name: str) -> Network:
        return self.get(name)

    def list(self) -> list[Network]:
        return sorted(self.nets.values(), key=lambda n: n.created)

    def containers_on(self, n: Network) -> builtins.list[str]:
        return [cid for cid, s in self.sandboxes.items() if s.endpoint(n.id) is not None]

    # -- create / remove --------------------------------------------------------------------

    async def create(self, name: str, driver: str = "bridge", internal: bool = False,
                     attachable: bool = False, labels: dict[str, str] | None = None,
                     options: dict[str, str] | None = None, ipam: dict[str, Any] | None = None,
                     check_duplicate: bool = True, enable_ipv6: bool = False) -> Network:
        if not name or not _NAME.match(name):
            raise InvalidArgument(f"invalid network name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        for n in self.nets.values():
            if n.name == name:
                raise Conflict(f"network with name {name} already exists")
        driver = driver or "bridge"
        if driver in ("host", "null"):
            raise PermissionDenied(f"only one instance of \"{driver}\" network is allowed")
        if driver != "bridge":
            raise NotFound(f"plugin \"{driver}\" not found")
        if enable_ipv6:
            raise InvalidArgument("IPv6 networks are not supported by berth")
        ipam = ipam or {}
        if (ipam.get("Driver") or "default") != "default":
            raise NotFound(f"plugin \"{ipam.get('Driver')}\" not found")
        cfgs = [msgspec.convert(c, IPAMConfig) for c in (ipam.get("Config") or [])]
        nid = secrets.token_hex(32)
        n = Network(id=nid, name=name, driver=driver, created=_now(), internal=internal,
                    attachable=attachable, labels=dict(labels or {}), options=dict(options or {}),
                    ipam_options=ipam.get("Options") or {}, ipam_config=cfgs,
                    bridge=(options or {}).get("com.docker.network.bridge.name") or f"br-{nid[:12]}")
        if len(n.bridge) > 15:
            raise InvalidArgument(f"bridge name {n.bridge} is too long (15 characters at most)")
        if any(o.bridge == n.bridge for o in self.nets.values()):
            raise Conflict(f"bridge name {n.bridge} is used by another network")
        await self._assign_subnet(n)
        await self._bridge_up(n)
        self._save_net(n)
        try:
            await self.apply_rules()
        except RuntimeFailure:
            await self._bridge_down(n)
            with self.db.tx() as tx:
                tx.execute("DELETE FROM networks WHERE id=?", (n.id,))
            self.nets.pop(n.id, None)
            raise
        self.emit("network", "create", n.id, {"name": n.name, "type": n.driver})
        return n

    async def _assign_subnet(self, n: Network) -> None:
        cfg = next((c for c in n.ipam_config if c.Subnet and ":" not in c.Subnet), None)
        others = [IPv4Network(o.subnet) for o in self.nets.values() if o.subnet and o.id != n.id]
        if cfg is not None:
            subnet = ipam.parse_subnet(cfg.Subnet)
            gw = ipam.parse_address(cfg.Gateway, "gateway") if cfg.Gateway else None
            rng = ipam.parse_subnet(cfg.IPRange) if cfg.IPRange else None
            ipam.check_config(subnet, gw, rng)
            if any(subnet.overlaps(o) for o in others):
                raise PermissionDenied("invalid pool request: Pool overlaps with other one on this address space")
            n.user_subnet = True
            n.subnet, n.gateway = str(subnet), str(gw or ipam.default_gateway(subnet))
            n.ip_range = str(rng) if rng else ""
            n.aux = [a for a in (cfg.AuxiliaryAddresses or {}).values()]
            return
        host = await self.kernel.host_networks({o.bridge for o in self.nets.values() if o.bridge})
        subnet = ipam.choose_subnet(others + host)
        n.subnet, n.gateway = str(subnet), str(ipam.default_gateway(subnet))

    async def remove(self, ref: str) -> None:
        n = self.get(ref)
        if n.predefined:
            raise PermissionDenied(f"{n.name} is a pre-defined network and cannot be removed")
        active = [cid for cid in self.containers_on(n) if cid in self.running]
        if active:
            raise PermissionDenied(f"error while removing network: network {n.name} id {n.id} has active endpoints")
        for cid in self.containers_on(n):
            s = self.sandboxes[cid]
            s.endpoints = [e for e in s.endpoints if e.network_id != n.id]
            self._save_sb(s)
        with self.db.tx() as tx:
            tx.execute("DELETE FROM networks WHERE id=?", (n.id,))
        self.nets.pop(n.id, None)
        await self.apply_rules()
        await self._bridge_down(n)
        self.emit("network", "destroy", n.id, {"name": n.name, "type": n.driver})

    async def prune(self, keep: Callable[[Network], bool]) -> builtins.list[str]:
        out = []
        for n in list(self.nets.values()):
            if n.predefined or self.containers_on(n) or keep(n):
                continue
            await self.remove(n.id)
            out.append(n.name)
        return out

    # -- kernel objects (network.sandbox) --------------------------------------------------

    async def _bridge_up(self, n: Network) -> None:
        if not n.bridge or not n.subnet:
            return
        mtu = n.options.get("com.docker.network.driver.mtu")
        await self.kernel.bridge_up(n.bridge, n.gateway, IPv4Network(n.subnet).prefixlen, int(mtu) if mtu else None)

    async def _bridge_down(self, n: Network) -> None:
        if n.bridge:
            await self.kernel.bridge_down(n.bridge)

    async def setup(self) -> None:
        """At berthd start: the default bridge's subnet (first time), bridges, forwarding, rules."""
        await self.kernel.sweep_stale()
        default = self.get("bridge")
        if not default.subnet:
            await self._assign_subnet(default)
            self._save_net(default)
        for n in self.nets.values():
            if n.is_bridge:
                await self._bridge_up(n)
        self.kernel.enable_forwarding()
        self._ready = True
        await self.apply_rules()

    async def ensure_ready(self) -> None:
        if not self._ready:
            await self.setup()

    async def apply_rules(self) -> None:
        if not self._ready:
            return
        async with self._rules_lock:
            bridges = [nat.BridgeRules(n.bridge, n.subnet, n.internal,
                                       n.options.get("com.docker.network.bridge.enable_ip_masquerade", "true") != "false")
                       for n in self.nets.values() if n.is_bridge and n.subnet]
            rules = []
            for cid in self.running:
                s = self.sandboxes.get(cid)
                if s is None or not s.ports:
                    continue
                ep = self._primary(s)
                if ep is None or not ep.ip:
                    continue
                for p in s.ports:
                    rules.append(nat.PortRule(p.proto, p.host_ip, p.host_port, ep.ip, p.container_port))
            await self.kernel.apply_nat(nat.render(self.table, bridges, rules))
            await self._sync_forward(frozenset(b.bridge for b in bridges))

    async def _sync_forward(self, bridges: frozenset[str]) -> None:
        """Accept rules in other firewalls' forward paths (forward.py), redone only when the
        set of bridges changes: not on the container start path."""
        if bridges == self._forward_bridges:
            return
        self._forward_bridges = bridges
        try:
            await self.kernel.sync_forward(self.forward_tag, sorted(bridges))
        except RuntimeFailure as e:
            log.warning("forward rules for berth's bridges: %s", e)

    async def shutdown(self, containers_running: bool) -> None:
        """berthd stops. With no container running, take every kernel object down (they are
        recreated at the next start); otherwise leave them to the running containers."""
        for cid in list(self.port_sockets):
            self._close_ports(cid)
        self.kernel.close_all_dns()
        if not containers_running and self._ready:
            try:
                await self.kernel.apply_nat(nat.render_delete(self.table))
            except RuntimeFailure as e:
                log.warning("%s", e)
            await self._sync_forward(frozenset())
            for n in self.nets.values():
                if n.is_bridge:
                    await self._bridge_down(n)
        self.kernel.close()

    # -- containers: create -----------------------------------------------------------------

    def prepare(self, cv: ContainerView, endpoints_config: dict[str, Any] | None) -> str:
        """Check the network mode and record the endpoints. -> the mode to store.

        Raises NotFound, InvalidArgument, Conflict.
        """
        mode = cv.network_mode or "default"
        cfgs: dict[str, Any] = dict(endpoints_config or {})
        if mode == "default":
            mode = "bridge"
            if "default" in cfgs and "bridge" not in cfgs:
                cfgs["bridge"] = cfgs.pop("default")
        sb = Sandbox(container_id=cv.id, mode=mode, sandbox_id=secrets.token_hex(32))
        if mode in ("host", "none"):
            if mode == "host" and cv.port_bindings:
                pass  # Docker warns and discards the ports
        elif mode.startswith("container:"):
            pass  # resolved by the containers engine
        else:
            n = self.get(mode)
            if n.driver == "host" or n.driver == "null":
                sb.mode = n.name
                mode = n.name
            else:
                sb.endpoints.append(self._endpoint_from(n, cfgs.get(mode) or cfgs.get(n.name) or cfgs.get(n.id), cv))
                for key, cfg in cfgs.items():
                    if key in (mode, n.name, n.id):
                        continue
                    other = self.get(key)
                    if other.is_bridge and sb.endpoint(other.id) is None:
                        sb.endpoints.append(self._endpoint_from(other, cfg, cv))
        self._save_sb(sb)
        return mode

    def _endpoint_from(self, n: Network, cfg: dict[str, Any] | None, cv: ContainerView) -> Endpoint:
        cfg = cfg or {}
        ipc = cfg.get("IPAMConfig") or {}
        ip = ipc.get("IPv4Address") or ""
        aliases = list(cfg.get("Aliases") or [])
        links = list(cfg.get("Links") or [])
        mac = cfg.get("MacAddress") or cv.mac or ""
        if n.predefined:
            if ip:
                raise InvalidArgument("user specified IP address is supported on user defined networks only")
            if aliases:
                raise InvalidArgument("network-scoped alias is supported only for containers in user defined networks")
        if ip:
            if not n.user_subnet:
                raise InvalidArgument("user specified IP address is supported only when connecting to networks with user configured subnets")
            addr = ipam.parse_address(ip, "IPv4 address")
            if addr not in IPv4Network(n.subnet):
                raise InvalidArgument(f"no configured subnet or ip-range contain the IP address {ip}")
        if mac and not re.match(r"^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$", mac):
            raise InvalidArgument(f"invalid MAC address: {mac}")
        try:
            prio = int(cfg.get("GwPriority") or 0)
        except (TypeError, ValueError):
            raise InvalidArgument(f"invalid GwPriority: {cfg.get('GwPriority')!r}") from None
        return Endpoint(network_id=n.id, aliases=aliases, links=links, ipv4=ip, mac_req=mac.lower(),
                        driver_opts=cfg.get("DriverOpts"), gw_priority=prio)

    def sandbox(self, cid: str) -> Sandbox | None:
        return self.sandboxes.get(cid)

    # -- containers: start ------------------------------------------------------------------

    def _taken(self, n: Network, but: str = "") -> set[IPv4Address]:
        out = {IPv4Address(n.gateway)} if n.gateway else set()
        out |= {IPv4Address(a) for a in n.aux}
        for cid, s in self.sandboxes.items():
            if cid == but:
                continue
            e = s.endpoint(n.id)
            if e is not None and e.ip:
                out.add(IPv4Address(e.ip))
        return out

    def _allocate(self, s: Sandbox, e: Endpoint) -> None:
        n = self.nets.get(e.network_id)
        if n is None:
            raise NoSuchNetwork(f"network {e.network_id} not found")
        taken = self._taken(n, but=s.container_id)
        subnet = IPv4Network(n.subnet)
        if e.ipv4:
            addr = ipam.request(subnet, IPv4Address(e.ipv4), taken)
        else:
            rng = IPv4Network(n.ip_range) if n.ip_range else None
            addr, n.cursor = ipam.allocate(subnet, rng, taken, n.cursor)
            self._save_net(n)
        e.ip = str(addr)
        e.mac = e.mac_req or ipam.mac_for(addr)
        e.endpoint_id = secrets.token_hex(32)

    def ip_on(self, cid: str, network_name: str) -> str:
        """The container's address on that network ("" if it has none there)."""
        s = self.sandboxes.get(cid)
        n = next((n for n in self.nets.values() if n.name == network_name), None)
        e = s.endpoint(n.id) if s is not None and n is not None else None
        return e.ip if e is not None else ""

    def _gateway_endpoint(self, s: Sandbox) -> Endpoint | None:
        """The endpoint whose network gives the default route: the highest GwPriority (API 1.48)
        among the non-internal ones, the first on a tie."""
        cands = [x for x in s.endpoints if x.network_id in self.nets and not self.nets[x.network_id].internal]
        return max(cands, key=lambda x: x.gw_priority, default=None)

    def _primary(self, s: Sandbox) -> Endpoint | None:
        return s.endpoints[0] if s.endpoints else None

    async def begin_start(self, cv: ContainerView, hosts_path: Path, resolv_path: Path,
                          hostname_path: Path, joined: Sandbox | None, joined_files: tuple[Path, Path, Path] | None
                          ) -> tuple[str, str]:
        """Allocate, reserve host ports, write the files, and (with endpoints) make the
        namespace and start plugging it in. -> (kind, namespace path for the spec), kind
        "new" (a fresh one, made by the runtime), "host", "join" (container:) or "made".

        Raises Conflict (address or port in use), NotFound.
        """
        s = self.sandboxes.get(cv.id)
        if s is None:
            s = Sandbox(container_id=cv.id, mode="bridge", sandbox_id=secrets.token_hex(32))
            s.endpoints.append(Endpoint(network_id=self.get("bridge").id))
        if s.endpoints:
            await self.ensure_ready()
        host_text = _read("/etc/resolv.conf")
        if s.mode.startswith("container:") and joined_files is not None:
            for src, dst in zip(joined_files, (hosts_path, resolv_path, hostname_path)):
                _write(dst, _read(str(src)))
            return "join", ""
        if s.mode == "host":
            _write(hosts_path, _read("/etc/hosts") or etcfiles.DEFAULT_HOSTS)
            text, _ = etcfiles.resolv_conf(host_text, embedded=False, host_network=True, dns=cv.dns,
                                           search=cv.dns_search, options=cv.dns_options)
            _write(resolv_path, text)
            return "host", ""
        try:
            for e in s.endpoints:
                try:
                    self._allocate(s, e)
                except (Conflict, InvalidArgument) as ex:
                    # A start failure (as dockerd's 500s): `run --rm` then removes the container.
                    raise RuntimeFailure(str(ex)) from None
            s.ports = []
            if s.endpoints:
                socks = []
                try:
                    for req in ports.requests(cv.port_bindings, cv.exposed, cv.publish_all):
                        b, sock = ports.reserve(req)
                        socks.append(sock)
                        s.ports.append(PortBinding(b.proto, b.container_port, b.host_ip, b.host_port))
                except ports.PortInUse as err:
                    for sock in socks:
                        sock.close()
                    raise RuntimeFailure(f"driver failed programming external connectivity on endpoint "
                                         f"{cv.name} ({s.endpoints[0].endpoint_id}): {err.strerror}") from None
                self.port_sockets[cv.id] = socks
        except BaseException:
            for e in s.endpoints:
                e.ip = ""
            raise
        self._save_sb(s)
        embedded = any(self.nets[e.network_id].user_defined for e in s.endpoints if e.network_id in self.nets)
        text, upstreams = etcfiles.resolv_conf(host_text, embedded=embedded, dns=cv.dns, search=cv.dns_search,
                                               options=cv.dns_options)
        s.upstreams = upstreams if cv.dns else []
        _write(resolv_path, text)
        _write(hosts_path, self._hosts(cv, s))
        if not s.endpoints:
            return "new", ""
        try:
            fd, path = await self.kernel.new_netns()
        except RuntimeFailure:
            await self.release(cv.id)
            raise
        task = asyncio.get_running_loop().create_task(self._plug_all(s, path))
        self.pending[cv.id] = (fd, task)
        return "made", path

    async def _plug_all(self, s: Sandbox, path: str) -> None:
        s.ns_path = path
        for i, e in enumerate(s.endpoints):
            await self._plug(s, e, i)

    def _hosts(self, cv: ContainerView, s: Sandbox) -> str:
        names = [cv.hostname] if not cv.domainname else [f"{cv.hostname}.{cv.domainname}", cv.hostname]
        own = [(e.ip, names) for e in s.endpoints[:1] if e.ip]
        gw = next((self.nets[e.network_id].gateway for e in s.endpoints if e.network_id in self.nets), "")
        extra = []
        for item in cv.extra_hosts:
            name, addr = etcfiles.parse_extra_host(item)
            extra.append((name, gw if addr == "host-gateway" else addr))
        links = []
        for link in cv.links:
            target, _, alias = link.partition(":")
            target = target.lstrip("/")
            alias = alias.rsplit("/", 1)[-1] if alias else target
            ip = self._ip_of_name(target, s)
            if ip:
                tid = self._id_of_name(target) or ""
                links.append((ip, [alias, tid[:12], target] if alias != target else [target, tid[:12]]))
        return etcfiles.hosts(own, extra, links)

    def _id_of_name(self, name: str) -> str | None:
        for cid in self.sandboxes:
            info = self.names(cid)
            if info and (info[0] == name or cid.startswith(name)):
                return cid
        return None

    def _ip_of_name(self, name: str, s: Sandbox) -> str | None:
        cid = self._id_of_name(name)
        if cid is None:
            return None
        other = self.sandboxes.get(cid)
        if other is None:
            return None
        for e in s.endpoints:
            oe = other.endpoint(e.network_id)
            if oe is not None and oe.ip:
                return oe.ip
        return None

    async def attach(self, cid: str, pid: int) -> None:
        """The init is blocked before execve in its new namespace: plug it in. Raises."""
        s = self.sandboxes.get(cid)
        pending = self.pending.pop(cid, None)
        if s is None or not s.endpoints or pending is None:
            if s is not None and s.mode == "none":
                s.ns_path = f"/proc/{pid}/ns/net"
                self._save_sb(s)
            if pending is not None:
                self.pending[cid] = pending
                await self.release(cid)
            return
        fd, task = pending
        try:
            try:
                await task
            finally:
                self.kernel.release_netns(fd)  # the init has joined the namespace: it holds it now
            s.ns_path = f"/proc/{pid}/ns/net"
            self.running.add(cid)
            self._save_sb(s)
            if s.ports:
                await self.apply_rules()
            if any(self.nets[e.network_id].user_defined for e in s.endpoints if e.network_id in self.nets):
                await self._serve_dns(s)
        except BaseException:
            await self.release(cid)
            raise
        for e in s.endpoints:
            n = self.nets.get(e.network_id)
            if n is not None:
                self.emit("network", "connect", n.id, {"container": cid, "name": n.name, "type": n.driver})

    async def _plug(self, s: Sandbox, e: Endpoint, index: int, at_start: bool = True) -> None:
        n = self.nets[e.network_id]
        e.ifname = f"eth{index}"
        e.host_if = veth_name(s.container_id, n.id)
        # At start the gateway endpoint gets the default route; one connected later only if alone.
        routed = e is self._gateway_endpoint(s) if at_start else index == 0
        gw = n.gateway if routed and not n.internal else None
        mtu = n.options.get("com.docker.network.driver.mtu")
        await self.kernel.plug(Plug(n.bridge, e.host_if, s.ns_path, e.ifname, e.mac, e.ip,
                                    IPv4Network(n.subnet).prefixlen, gw, int(mtu) if mtu else None))

    async def _serve_dns(self, s: Sandbox) -> None:
        await self.kernel.serve_dns(s.container_id, s.ns_path, s.upstreams or None)

    def resolve(self, cid: str, name: str) -> tuple[builtins.list[IPv4Address] | None, bool]:
        """The embedded DNS server's lookup: names on this container's user networks."""
        s = self.sandboxes.get(cid)
        if s is None:
            return None, False
        name = name.lower().rstrip(".")
        may_forward = False
        found: builtins.list[IPv4Address] = []
        for e in s.endpoints:
            n = self.nets.get(e.network_id)
            if n is None or not n.user_defined:
                continue
            if not n.internal:
                may_forward = True
            base = name
            if name.endswith("." + n.name.lower()):
                base = name[: -len(n.name) - 1]
            for ocid in self.running:
                os_ = self.sandboxes.get(ocid)
                oe = os_.endpoint(n.id) if os_ else None
                if oe is None or not oe.ip:
                    continue
                info = self.names(ocid)
                cands = {a.lower() for a in oe.aliases} | {ocid[:12]}
                if info:
                    cands.add(info[0].lower())
                if base in cands:
                    addr = IPv4Address(oe.ip)
                    if addr not in found:
                        found.append(addr)
        return (found if found else None), may_forward

    async def release(self, cid: str) -> None:
        """The container stopped: its addresses, ports, veths, DNS socket go."""
        s = self.sandboxes.get(cid)
        pending = self.pending.pop(cid, None)
        if pending is not None:
            fd, task = pending
            task.cancel()
            try:
                await task
            except BaseException:  # noqa: BLE001 - the start failed already; this is cleanup
                pass
            self.kernel.release_netns(fd)
        self._close_ports(cid)
        self.kernel.close_dns(cid)   # the socket pins the namespace: close it first
        was_running = cid in self.running
        self.running.discard(cid)
        if s is None:
            return
        # The veths go with the namespace (the kernel deletes both ends when it is freed);
        # deleting them here would only wait for that on berthd's start/exit path. A namespace
        # still alive (a failed start whose init is being killed) loses them the same way.
        had_ports = bool(s.ports)
        for e in s.endpoints:
            e.ip = e.host_if = e.ifname = e.endpoint_id = ""
            e.mac = ""
        s.ports = []
        s.ns_path = ""
        try:
            self._save_sb(s)
        except OSError as err:  # a full disk: the rules below must still go (saved at the next change)
            log.error("container %s: saving its network sandbox: %s", cid[:12], err)
        if was_running and had_ports:
            await self.apply_rules()
        if was_running:
            for e in s.endpoints:
                n = self.nets.get(e.network_id)
                if n is not None:
                    self.emit("network", "disconnect", n.id, {"container": cid, "name": n.name, "type": n.driver})

    def _close_ports(self, cid: str) -> None:
        for sock in self.port_sockets.pop(cid, []):
            sock.close()

    def forget(self, cid: str) -> None:
        self.sandboxes.pop(cid, None)
        with self.db.tx() as tx:
            tx.execute("DELETE FROM sandboxes WHERE container_id=?", (cid,))

    async def recover(self, running: dict[str, int]) -> None:
        """berthd start: ``running`` maps live container IDs to their init pids."""
        await self.setup()
        for cid, s in list(self.sandboxes.items()):
            if cid not in running:
                if any(e.ip for e in s.endpoints) or s.ports:
                    for e in s.endpoints:
                        e.ip = e.host_if = e.ifname = e.mac = e.endpoint_id = ""
                    s.ports = []
                    self._save_sb(s)
                continue
            if not s.endpoints:
                continue
            self.running.add(cid)
            s.ns_path = f"/proc/{running[cid]}/ns/net"
            socks = []
            for p in s.ports:
                try:
                    _, sock = ports.reserve(ports.Request(p.proto, p.container_port, p.host_ip,
                                                          p.host_port, p.host_port))
                    socks.append(sock)
                except OSError as e:
                    log.warning("re-reserve port %s: %s", p.host_port, e)
            self.port_sockets[cid] = socks
            if any(self.nets[e.network_id].user_defined for e in s.endpoints if e.network_id in self.nets):
                await self._serve_dns(s)
        await self.apply_rules()

    # -- connect / disconnect ---------------------------------------------------------------

    async def connect(self, ref: str, cv: ContainerView, cfg: dict[str, Any] | None, running_pid: int) -> None:
        n = self.get(ref)
        s = self.sandboxes.get(cv.id)
        if s is None:
            s = Sandbox(container_id=cv.id, mode=n.name, sandbox_id=secrets.token_hex(32))
        if s.mode in ("host", "none") or s.mode.startswith("container:"):
            raise InvalidArgument("container sharing network namespace with another container or host "
                                  "cannot be connected to any other network")
        if not n.is_bridge:
            raise InvalidArgument("container cannot be disconnected from host network or connected to host network")
        if s.endpoint(n.id) is not None:
            raise PermissionDenied(f"endpoint with name {cv.name} already exists in network {n.name}")
        e = self._endpoint_from(n, cfg, cv)
        s.endpoints.append(e)
        if running_pid:
            await self.ensure_ready()
            try:
                self._allocate(s, e)
                s.ns_path = f"/proc/{running_pid}/ns/net"
                await self._plug(s, e, len(s.endpoints) - 1 if len(s.endpoints) > 1 else 0, at_start=False)
            except BaseException:
                s.endpoints.remove(e)
                raise
            self.running.add(cv.id)
            if n.user_defined and not self.kernel.serving_dns(cv.id):
                await self._serve_dns(s)
        self._save_sb(s)
        self.emit("network", "connect", n.id, {"container": cv.id, "name": n.name, "type": n.driver})

    async def disconnect(self, ref: str, cid: str, force: bool) -> None:
        n = self.get(ref)
        s = self.sandboxes.get(cid)
        e = s.endpoint(n.id) if s else None
        if s is None or e is None:
            if force:
                return
            raise InvalidArgument(f"container {cid[:12]} is not connected to network {n.name}")
        if e.host_if:
            await self.kernel.unplug(e.host_if)
        s.endpoints.remove(e)
        self._save_sb(s)
        await self.apply_rules()
        self.emit("network", "disconnect", n.id, {"container": cid, "name": n.name, "type": n.driver})


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _write(path: Path, text: str) -> None:
    write_atomic(path, text.encode(), sync=False)  # per-container files, rebuilt on restart
