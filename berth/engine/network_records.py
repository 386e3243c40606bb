"""Network records: the networks and each container's sandbox (its endpoints and published
ports), their SQLite table, and the lookups every other network module shares.

Vocabulary: a *network* is a record (bridge, host or null driver); a bridge network is one
Linux bridge. A container's *sandbox* is its network namespace and what berth put in it; an
*endpoint* is the container's attachment to one network (a veth pair and an address).

Addresses and the IPAM cursor live in these records, so a restart never hands out an address
that a running container holds.
"""

from __future__ import annotations

import builtins
import secrets
import time
from collections.abc import Callable
from ipaddress import IPv4Network
from typing import Any

import msgspec

from berth.errors import InvalidArgument, NotFound
from berth.state.db import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS networks (
    id   TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    data BLOB NOT NULL              -- msgspec JSON of engine.network_records.Network
);
CREATE TABLE IF NOT EXISTS sandboxes (
    container_id TEXT PRIMARY KEY,
    data BLOB NOT NULL              -- msgspec JSON of engine.network_records.Sandbox
);
"""

PREDEFINED = ("bridge", "host", "none")


class NoSuchNetwork(NotFound):
    pass


def now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


class IPAMConfig(msgspec.Struct, omit_defaults=True):
    Subnet: str = ""
    IPRange: str = ""
    Gateway: str = ""
    AuxiliaryAddresses: dict[str, str] | None = None


class IPAMRequest(msgspec.Struct):
    """What a network create asks of address management (Docker's IPAM object; api/ decodes it)."""

    driver: str = "default"
    options: dict[str, str] = {}
    config: list[IPAMConfig] = []


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
    enable_ipv6: bool = False        # --ipv6 (daemon.json ipv6 for the default bridge)
    subnet6: str = ""
    gateway6: str = ""
    ip_range6: str = ""
    user_subnet6: bool = False       # an IPv6 --subnet given: --ip6 is allowed
    cursor6: int = 0

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
    ipv6: str = ""                   # requested (--ip6)
    endpoint_id: str = ""
    ip: str = ""                     # allocated while running
    ip6: str = ""
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
    # networks named at create that did not exist then, with their endpoint settings: as
    # dockerd, the create succeeds and the start looks them up (a compose project may make
    # them in between)
    pending: dict[str, dict[str, Any]] = {}

    def endpoint(self, network_id: str) -> Endpoint | None:
        for e in self.endpoints:
            if e.network_id == network_id:
                return e
        return None


_enc = msgspec.json.Encoder()
_dec_net = msgspec.json.Decoder(Network)
_dec_sb = msgspec.json.Decoder(Sandbox)


class ContainerView(msgspec.Struct):
    """What the network modules need to know of a container (engine.attachments makes it)."""

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


class NetworkTable:
    """The records, loaded once; every change is one SQLite transaction, then the cache."""

    def __init__(self, db: Database, default_bridge: str):
        self.db = db
        self.default_bridge = default_bridge
        db.conn.executescript(SCHEMA)
        self.nets: dict[str, Network] = {}
        self.sandboxes: dict[str, Sandbox] = {}
        for _, n in db.rows("networks", "id", _dec_net.decode):
            self.nets[n.id] = n
        for _, s in db.rows("sandboxes", "container_id", _dec_sb.decode):
            self.sandboxes[s.container_id] = s
        self._ensure_predefined()
        self.pools: list[tuple[IPv4Network, int]] = []   # daemon.json's default-address-pools
        self.running: set[str] = set()          # containers whose endpoints are live
        self.names: Callable[[str], tuple[str, str] | None] = lambda cid: None  # -> (name, hostname)

    def _ensure_predefined(self) -> None:
        have = {n.name for n in self.nets.values()}
        for name, driver in (("bridge", "bridge"), ("host", "host"), ("none", "null")):
            if name not in have:
                n = Network(id=secrets.token_hex(32), name=name, driver=driver, created=now(), predefined=True)
                if name == "bridge":
                    n.bridge = self.default_bridge
                    n.options = {"com.docker.network.bridge.default_bridge": "true",
                                 "com.docker.network.bridge.enable_icc": "true",
                                 "com.docker.network.bridge.enable_ip_masquerade": "true",
                                 "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
                                 "com.docker.network.bridge.name": self.default_bridge,
                                 "com.docker.network.driver.mtu": "1500"}
                self.save_net(n)

    def save_net(self, n: Network) -> None:
        with self.db.tx() as tx:
            tx.execute("INSERT OR REPLACE INTO networks VALUES (?,?,?)", (n.id, n.name, _enc.encode(n)))
        self.nets[n.id] = n

    def save_sb(self, s: Sandbox) -> None:
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

    def delete_net(self, n: Network) -> None:
        with self.db.tx() as tx:
            tx.execute("DELETE FROM networks WHERE id=?", (n.id,))
        self.nets.pop(n.id, None)

    def forget(self, cid: str) -> None:
        self.sandboxes.pop(cid, None)
        with self.db.tx() as tx:
            tx.execute("DELETE FROM sandboxes WHERE container_id=?", (cid,))

    def sandbox(self, cid: str) -> Sandbox | None:
        return self.sandboxes.get(cid)

    def ip_on(self, cid: str, network_name: str) -> str:
        """The container's address on that network ("" if it has none there)."""
        s = self.sandboxes.get(cid)
        n = next((n for n in self.nets.values() if n.name == network_name), None)
        e = s.endpoint(n.id) if s is not None and n is not None else None
        return e.ip if e is not None else ""

