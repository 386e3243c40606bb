"""Raw rtnetlink (netlink(7), rtnetlink(7)) over a plain ``AF_NETLINK`` socket: the few
messages a container's veth needs, built with ``struct`` and sent in batches.

pyroute2 runs an event loop of its own per call and looks every link up by name first: about
seven round trips and a few ms of Python per veth. Here one ``RTM_NEWLINK`` makes the pair
(the host end on its bridge and up, the peer already in the container's namespace with its
name, MAC and MTU), and two ``sendmsg`` into a socket opened inside that namespace bring the
peer up and give it its address and default route. Every request asks for an ack, so a failure comes back
as the request's errno.

    with Rtnl() as host:                        # in berthd's namespace
        host.add_veth("vethab12", "eth0", ns_fd, "02:42:ac:11:00:02", master=if_index("br0"))
    inside = run_in_netns(path, Rtnl)           # a socket made in the container's namespace
    inside.configure("eth0", "172.17.0.2", 16, gateway="172.17.0.1")
    host.delete_link("vethab12")                # the peer goes with it

Messages (include/uapi/linux/{netlink,rtnetlink,if_link,if_addr}.h): a 16-byte ``nlmsghdr``,
then ``ifinfomsg`` / ``ifaddrmsg`` / ``rtmsg``, then attributes (``rtattr``: length, type,
payload padded to 4 bytes). A veth's peer is a nested ``ifinfomsg`` + attributes inside
``IFLA_LINKINFO`` / ``IFLA_INFO_DATA`` / ``VETH_INFO_PEER`` (drivers/net/veth.c).
"""

from __future__ import annotations

import errno as _errno
import fcntl
import os
import socket
import struct

NETLINK_ROUTE = 0
NLMSG_ERROR = 2
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_ACK_TLVS = 0x200   # on an NLMSG_ERROR: extended-ack attributes follow
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10     # an error echoes only the request's header
NETLINK_EXT_ACK = 11     # ... and says why (NLMSGERR_ATTR_MSG)
NLMSGERR_ATTR_MSG = 1

RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_NEWADDR = 20
RTM_NEWROUTE = 24

IFF_UP = 0x1
IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_MASTER = 10
IFLA_LINKINFO = 18
IFLA_NET_NS_FD = 28
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
VETH_INFO_PEER = 1

IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_BROADCAST = 4

RTA_GATEWAY = 5
RT_TABLE_MAIN = 254
RTPROT_BOOT = 3
RT_SCOPE_UNIVERSE = 0
RTN_UNICAST = 1

_HDR = struct.Struct("=IHHII")        # nlmsghdr: len, type, flags, seq, pid
_IFINFO = struct.Struct("=BxHiII")    # ifinfomsg: family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBI")     # ifaddrmsg: family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags
_ERR = struct.Struct("=i")


def attr(kind: int, payload: bytes) -> bytes:
    """One rtattr, padded to 4 bytes."""
    n = 4 + len(payload)
    return struct.pack("=HH", n, kind) + payload + b"\0" * (-n & 3)


def _name(s: str) -> bytes:
    return s.encode() + b"\0"


def _u32(v: int) -> bytes:
    return struct.pack("=I", v)


def _mac(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


_SIOCGIFINDEX = 0x8933


def if_index(name: str) -> int:
    """The interface's index in the calling thread's namespace (one ioctl).

    Raises:
        OSError: ENODEV if there is no such interface; EMFILE if out of descriptors
        (``socket.if_nametoindex`` reads both as "no interface with this name").
    """
    if len(name.encode()) >= 16:  # IFNAMSIZ: no interface has a longer name
        raise OSError(_errno.ENODEV, os.strerror(_errno.ENODEV), name)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        try:
            req = fcntl.ioctl(s.fileno(), _SIOCGIFINDEX, struct.pack("16si", name.encode(), 0))
        except OSError as e:
            raise OSError(e.errno, os.strerror(e.errno or _errno.ENODEV), name) from None
    return int(struct.unpack("16si", req)[1])


def veth_request(host_if: str, peer: str, ns_fd: int, peer_mac: str, master: int, mtu: int | None) -> tuple[int, int, bytes]:
    """RTM_NEWLINK for a veth pair: ``host_if`` enslaved to ``master`` and up, ``peer`` in the
    namespace ``ns_fd`` with ``peer_mac`` (down: a veth end cannot come up before its pair is
    registered, veth_open's ENOTCONN). -> (type, flags, body)."""
    mtu_attr = attr(IFLA_MTU, _u32(mtu)) if mtu else b""
    peer_msg = (_IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + attr(IFLA_IFNAME, _name(peer))
                + attr(IFLA_NET_NS_FD, _u32(ns_fd)) + attr(IFLA_ADDRESS, _mac(peer_mac)) + mtu_attr)
    info = attr(IFLA_INFO_KIND, b"veth") + attr(IFLA_INFO_DATA, attr(VETH_INFO_PEER, peer_msg))
    body = (_IFINFO.pack(socket.AF_UNSPEC, 0, 0, IFF_UP, IFF_UP) + attr(IFLA_IFNAME, _name(host_if))
            + attr(IFLA_MASTER, _u32(master)) + mtu_attr + attr(IFLA_LINKINFO, info))
    return RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body


def addr_request(index: int, address: str, prefixlen: int) -> tuple[int, int, bytes]:
    """RTM_NEWADDR for an IPv4 address with its broadcast (as ``ip addr add A/P brd +``)."""
    local = socket.inet_aton(address)
    host_bits = (1 << (32 - prefixlen)) - 1 if prefixlen < 31 else 0
    brd = struct.pack("!I", struct.unpack("!I", local)[0] | host_bits)
    body = (_IFADDR.pack(socket.AF_INET, prefixlen, 0, RT_SCOPE_UNIVERSE, index) + attr(IFA_LOCAL, local)
            + attr(IFA_ADDRESS, local) + (attr(IFA_BROADCAST, brd) if host_bits else b""))
    return RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, body


def default_route_request(gateway: str) -> tuple[int, int, bytes]:
    """RTM_NEWROUTE 0.0.0.0/0 via ``gateway`` in the main table (as ``ip route add default via``)."""
    body = (_RTMSG.pack(socket.AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST, 0)
            + attr(RTA_GATEWAY, socket.inet_aton(gateway)))
    return RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, body


def up_request(name: str) -> tuple[int, int, bytes]:
    """RTM_NEWLINK on an existing link, by name: IFF_UP."""
    return RTM_NEWLINK, 0, _IFINFO.pack(socket.AF_UNSPEC, 0, 0, IFF_UP, IFF_UP) + attr(IFLA_IFNAME, _name(name))


def getlink_request(name: str) -> tuple[int, int, bytes]:
    return RTM_GETLINK, 0, _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + attr(IFLA_IFNAME, _name(name))


def dellink_request(name: str) -> tuple[int, int, bytes]:
    return RTM_DELLINK, 0, _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + attr(IFLA_IFNAME, _name(name))


def _ext_ack(msg: bytes) -> str:
    """NLMSGERR_ATTR_MSG of an NLMSG_ERROR sent with NETLINK_CAP_ACK (header, errno, the
    request's header, then attributes)."""
    off = _HDR.size + _ERR.size + _HDR.size
    while off + 4 <= len(msg):
        n, kind = struct.unpack_from("=HH", msg, off)
        if n < 4:
            break
        if kind == NLMSGERR_ATTR_MSG:
            return msg[off + 4:off + n].rstrip(b"\0").decode(errors="replace")
        off += (n + 3) & ~3
    return ""


class Rtnl:
    """One NETLINK_ROUTE socket, in the namespace of the thread that made it (a socket keeps
    its namespace for life). Not thread-safe: one user at a time."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
        for opt in (NETLINK_CAP_ACK, NETLINK_EXT_ACK):
            try:
                self.sock.setsockopt(SOL_NETLINK, opt, 1)
            except OSError:
                pass  # an old kernel: plain errnos
        self.sock.bind((0, 0))
        self._seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, *msgs: tuple[int, int, bytes], what: str = "") -> list[bytes]:
        """Send ``msgs`` in one sendmsg, each with NLM_F_ACK, and wait for every ack -> the
        replies that came before them (whole messages, header included).

        Raises:
            OSError: the errno of the first request the kernel refused (later ones are still
            acknowledged, so the socket stays in step).
        """
        first = self._seq + 1
        out = []
        for kind, flags, body in msgs:
            self._seq += 1
            out.append(_HDR.pack(_HDR.size + len(body), kind, NLM_F_REQUEST | NLM_F_ACK | flags, self._seq, 0) + body)
        self.sock.sendmsg(out)
        replies, errors = self._acks(first, self._seq)
        if errors:
            seq, code, why = min(errors)
            text = os.strerror(code) + (f" ({why})" if why else "")
            raise OSError(code, text, what or f"netlink request {seq - first + 1}")
        return replies

    def _acks(self, first: int, last: int) -> tuple[list[bytes], list[tuple[int, int, str]]]:
        """Read until every request from ``first`` to ``last`` is acknowledged -> (replies,
        [(seq, errno, the kernel's reason or "")] of the failed requests)."""
        pending = set(range(first, last + 1))
        replies: list[bytes] = []
        errors: list[tuple[int, int, str]] = []
        while pending:
            data = self.sock.recv(65536)
            off = 0
            while off + _HDR.size <= len(data):
                length, kind, flags, seq, _pid = _HDR.unpack_from(data, off)
                if length < _HDR.size:
                    break
                if kind == NLMSG_ERROR and seq in pending:
                    pending.discard(seq)
                    code = -_ERR.unpack_from(data, off + _HDR.size)[0]
                    if code:
                        msg = data[off:off + length]
                        errors.append((seq, code, _ext_ack(msg) if flags & NLM_F_ACK_TLVS else ""))
                elif first <= seq <= last:
                    replies.append(data[off:off + length])
                off += (length + 3) & ~3
        return replies, errors

    # -- what a container's endpoint needs --------------------------------------------------

    def add_veth(self, host_if: str, peer: str, ns_fd: int, peer_mac: str, master: int, mtu: int | None = None) -> None:
        self.request(veth_request(host_if, peer, ns_fd, peer_mac, master, mtu), what=f"add veth {host_if}")

    def delete_link(self, name: str) -> bool:
        """-> False if there was no such link."""
        try:
            self.request(dellink_request(name), what=f"delete link {name}")
        except OSError as e:
            if e.errno in (_errno.ENODEV, _errno.ENOENT):
                return False
            raise
        return True

    def up(self, name: str) -> int:
        """Bring ``name`` up in this socket's namespace -> its index (RTM_NEWLINK and
        RTM_GETLINK by name, one sendmsg).

        Raises:
            OSError: ENODEV if there is no such link.
        """
        for msg in self.request(up_request(name), getlink_request(name), what=f"link {name}"):
            if _HDR.unpack_from(msg)[1] == RTM_NEWLINK:
                return int(_IFINFO.unpack_from(msg, _HDR.size)[2])
        raise OSError(_errno.ENODEV, "no such interface", name)

    def configure(self, ifname: str, address: str, prefixlen: int, gateway: str | None) -> None:
        """In this socket's namespace: ``ifname`` up with ``address``, and the default route
        through ``gateway`` if one is given (two sendmsg: the link, then address and route)."""
        msgs = [addr_request(self.up(ifname), address, prefixlen)]
        if gateway:
            msgs.append(default_route_request(gateway))
        self.request(*msgs, what=f"address {address}/{prefixlen} on {ifname}")
