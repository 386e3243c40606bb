"""Published ports: from HostConfig.PortBindings/ExposedPorts to concrete bindings, and the
host sockets that reserve them.

The kernel forwards the traffic (nat.py's DNAT); berthd only *binds* each host port, without
listening, so that nothing else can take it while the container runs and so that a port
already in use is an error at start, as dockerd 28 does. A random port (``-p 80``, ``-P``)
is whatever the kernel's ephemeral range gives that bind.

A container with an IPv6 address also gets each port on ``[::]`` (a second, IPv6-only socket
on the same port). The one exception to "the kernel moves the bytes" is ``[::1]``: IPv6 has no
``route_localnet``, so a packet from ::1 cannot be DNATed out through a bridge. berthd listens
on those IPv6 sockets instead: ``proxy`` copies TCP connections that reach them (only
loopback ones do: the rest are DNATed before any socket sees them) to the container, and
``udp_proxy`` relays UDP datagrams, as docker-proxy does: one connected socket per client
address carries them to the container and its replies back, closed after UDP_IDLE seconds
without traffic. docker-proxy (its own process) bounds its flows only by its fd limit; here
each flow is a file descriptor of berthd's, so a proxy holds at most UDP_MAX_FLOWS: a new
client past that takes the place of the flow that waited longest (as conntrack's early drop).
"""

from __future__ import annotations

import asyncio
import collections
import errno
import socket
from dataclasses import dataclass
from typing import Any, cast

from berth.errors import InvalidArgument, os_text

PROTOS = ("tcp", "udp", "sctp")
UDP_IDLE = 90.0   # seconds a UDP flow lives without traffic (docker-proxy's UDPConnTrackTimeout)
UDP_MAX_FLOWS = 256   # flows (client addresses, one fd each) of one proxy; only loopback reaches it


@dataclass(frozen=True)
class Request:
    proto: str
    container_port: int
    host_ip: str          # "" = every address
    host_port_lo: int     # 0 = any
    host_port_hi: int


@dataclass(frozen=True)
class Binding:
    proto: str
    container_port: int
    host_ip: str
    host_port: int

    @property
    def key(self) -> str:
        return f"{self.container_port}/{self.proto}"


def parse_port_key(key: str) -> tuple[int, str]:
    port, _, proto = key.partition("/")
    proto = proto or "tcp"
    if proto not in PROTOS or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidArgument(f"invalid port specification: {key!r}")
    return int(port), proto


def _host_range(text: str) -> tuple[int, int]:
    text = (text or "").strip()
    if not text:
        return 0, 0
    lo, _, hi = text.partition("-")
    try:
        a, b = int(lo), int(hi or lo)
    except ValueError:
        raise InvalidArgument(f"invalid hostPort: {text}") from None
    if not (0 <= a <= b < 65536):
        raise InvalidArgument(f"invalid hostPort: {text}")
    return a, b


def requests(bindings: dict[str, Any] | None, exposed: dict[str, Any] | None,
             publish_all: bool) -> list[Request]:
    """What the container asks for. Raises InvalidArgument."""
    out: list[Request] = []
    seen: set[str] = set()
    for key, items in (bindings or {}).items():
        cport, proto = parse_port_key(key)
        seen.add(f"{cport}/{proto}")
        for item in items or [{}]:
            item = item or {}
            ip = (item.get("HostIp") or "").strip("[]")
            lo, hi = _host_range(str(item.get("HostPort") or ""))
            out.append(Request(proto, cport, "" if ip == "0.0.0.0" else ip, lo, hi))
    if publish_all:
        for key in exposed or {}:
            cport, proto = parse_port_key(key)
            if f"{cport}/{proto}" not in seen:
                out.append(Request(proto, cport, "", 0, 0))
    return out


class BindFailed(OSError):
    """A host port could not be bound (its ``strerror`` says which, in dockerd's words)."""


class PortInUse(BindFailed):
    pass


def privileged_port(port: int, start: int) -> str:
    """A rootless engine's refusal of a port below the host's unprivileged start (rootlesskit's words)."""
    return (f"cannot expose privileged port {port}, you can add 'net.ipv4.ip_unprivileged_port_start={port}' "
            f"to /etc/sysctl.conf (currently {start}), or choose a larger port number (>= {start})")


def reserve(req: Request, listen: bool = False) -> tuple[Binding, socket.socket]:
    """Bind the host port (the first free one of a range); ``listen``: a TCP one listens too
    (a rootless engine's, so that pasta sees it and forwards the host's port). Raises PortInUse,
    BindFailed (an address the host does not have...), OSError (out of descriptors)."""
    kind = socket.SOCK_DGRAM if req.proto == "udp" else socket.SOCK_STREAM
    ports = [0] if req.host_port_lo == 0 else list(range(req.host_port_lo, req.host_port_hi + 1))
    last: OSError | None = None
    v6 = ":" in req.host_ip
    for port in ports:
        s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, kind | socket.SOCK_CLOEXEC)
        try:
            if v6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind((req.host_ip or "0.0.0.0", port))
            if listen and kind == socket.SOCK_STREAM:
                s.listen(64)
        except OSError as e:
            s.close()
            last = e
            if e.errno in (errno.EADDRINUSE, errno.EACCES):
                continue
            raise BindFailed(e.errno, f"failed to bind host port for {req.host_ip or '0.0.0.0'}:{port}/{req.proto}: "
                                      f"{os_text(e)}") from None
        return Binding(req.proto, req.container_port, req.host_ip, s.getsockname()[1]), s
    shown = f"{req.host_port_lo}-{req.host_port_hi}" if req.host_port_hi != req.host_port_lo else str(req.host_port_lo)
    raise PortInUse(last.errno if last else errno.EADDRINUSE,
                    f"failed to bind host port for {req.host_ip or '0.0.0.0'}:{shown}/{req.proto}: "
                    "address already in use")


async def proxy(sock: socket.socket, target: tuple[str, int]) -> asyncio.Server:
    """Serve TCP connections to the bound ``sock`` by copying them to ``target``."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(*target)
        except OSError:
            writer.close()
            return
        try:
            await asyncio.gather(_pipe(reader, up_w), _pipe(up_r, writer))
        finally:
            writer.close()
            up_w.close()

    return await asyncio.start_server(handle, sock=sock)


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while data := await src.read(65536):
            dst.write(data)
            await dst.drain()
        if dst.can_write_eof():
            dst.write_eof()
    except OSError:
        dst.close()


@dataclass
class _Flow:
    sock: socket.socket       # connected to the container's address and port
    last: float               # loop time of the last datagram either way


class UdpProxy(asyncio.DatagramProtocol):
    """Datagrams that reach the bound socket go to ``target`` from a socket of their client's
    own; what comes back on it goes to that client from the bound socket. ``flows`` is in
    order of use, the least recently used first: the one to go when ``max_flows`` are open."""

    def __init__(self, target: tuple[str, int], idle: float = UDP_IDLE, max_flows: int = UDP_MAX_FLOWS):
        self.target = target
        self.idle = idle
        self.max_flows = max_flows
        self.flows: collections.OrderedDict[Any, _Flow] = collections.OrderedDict()
        self.transport: asyncio.DatagramTransport | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)   # 3.11's is not a subclass

    def datagram_received(self, data: bytes, addr: Any) -> None:
        flow = self.flows.get(addr) or self._open(addr)
        if flow is None:
            return
        flow.last = self._loop.time()
        self.flows.move_to_end(addr)
        try:
            flow.sock.send(data)
        except OSError:   # a full buffer, or an ICMP error from the last one: UDP may drop
            pass

    def _open(self, addr: Any) -> _Flow | None:
        while len(self.flows) >= self.max_flows:
            self._drop(next(iter(self.flows)))
        family = socket.AF_INET6 if ":" in self.target[0] else socket.AF_INET
        s = socket.socket(family, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
        try:
            s.connect(self.target)
        except OSError:
            s.close()
            return None
        flow = self.flows[addr] = _Flow(s, self._loop.time())
        self._loop.add_reader(s.fileno(), self._reply, addr, flow)
        self._arm()
        return flow

    def _reply(self, addr: Any, flow: _Flow) -> None:
        while True:
            try:
                data = flow.sock.recv(65535)
            except BlockingIOError:
                return
            except OSError:       # ECONNREFUSED: nothing listens there (yet); the next datagram retries
                self._drop(addr)
                return
            flow.last = self._loop.time()
            if addr in self.flows:
                self.flows.move_to_end(addr)
            if self.transport is not None and not self.transport.is_closing():
                self.transport.sendto(data, addr)

    def _drop(self, addr: Any) -> None:
        flow = self.flows.pop(addr, None)
        if flow is not None:
            self._loop.remove_reader(flow.sock.fileno())
            flow.sock.close()

    def _arm(self) -> None:
        if self._sweeper is None and self.flows:
            self._sweeper = self._loop.call_later(self.idle / 2, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        now = self._loop.time()
        for addr, flow in list(self.flows.items()):
            if now - flow.last >= self.idle:
                self._drop(addr)
        self._arm()

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for addr in list(self.flows):
            self._drop(addr)
        if self.transport is not None:
            self.transport.close()


async def udp_proxy(sock: socket.socket, target: tuple[str, int], idle: float = UDP_IDLE,
                    max_flows: int = UDP_MAX_FLOWS) -> UdpProxy:
    """Relay UDP datagrams that reach the bound ``sock`` to ``target`` (``UdpProxy``)."""
    proto = UdpProxy(target, idle, max_flows)
    await asyncio.get_running_loop().create_datagram_endpoint(lambda: proto, sock=sock)
    return proto


def port_map(bindings: list[Binding], exposed: dict[str, Any] | None) -> dict[str, list[dict[str, str]] | None]:
    """NetworkSettings.Ports: every exposed or published port, with its host bindings."""
    out: dict[str, list[dict[str, str]] | None] = {}
    for key in exposed or {}:
        cport, proto = parse_port_key(key)
        out[f"{cport}/{proto}"] = None
    for b in bindings:
        lst = out.get(b.key) or []
        lst.append({"HostIp": b.host_ip or "0.0.0.0", "HostPort": str(b.host_port)})
        out[b.key] = lst
    return out
