"""linux.rtnl's messages, decoded back field by field (the kernel's acceptance of them is
tested as root in tests/integration/network/test_rtnl.py)."""

from __future__ import annotations

import socket
import struct

from berth.linux import rtnl


def attrs(buf: bytes) -> dict[int, bytes]:
    out, off = {}, 0
    while off + 4 <= len(buf):
        n, kind = struct.unpack_from("=HH", buf, off)
        out[kind] = buf[off + 4:off + n]
        off += (n + 3) & ~3
    return out


def test_veth_request_puts_the_peer_in_the_namespace_down_and_the_host_end_on_the_bridge_up() -> None:
    kind, flags, body = rtnl.veth_request("vethabc", "eth0", 7, "02:42:ac:11:00:02", master=5, mtu=1400)
    assert kind == rtnl.RTM_NEWLINK and flags == rtnl.NLM_F_CREATE | rtnl.NLM_F_EXCL
    _fam, _type, index, ifflags, change = rtnl._IFINFO.unpack_from(body)
    assert (index, ifflags, change) == (0, rtnl.IFF_UP, rtnl.IFF_UP)
    top = attrs(body[rtnl._IFINFO.size:])
    assert top[rtnl.IFLA_IFNAME] == b"vethabc\0"
    assert struct.unpack("=I", top[rtnl.IFLA_MASTER]) == (5,)
    assert struct.unpack("=I", top[rtnl.IFLA_MTU]) == (1400,)
    info = attrs(top[rtnl.IFLA_LINKINFO])
    assert info[rtnl.IFLA_INFO_KIND] == b"veth"
    peer = attrs(info[rtnl.IFLA_INFO_DATA])[rtnl.VETH_INFO_PEER]
    assert rtnl._IFINFO.unpack_from(peer)[3:] == (0, 0)   # down: veth_open refuses before the pair exists
    p = attrs(peer[rtnl._IFINFO.size:])
    assert p[rtnl.IFLA_IFNAME] == b"eth0\0"
    assert struct.unpack("=I", p[rtnl.IFLA_NET_NS_FD]) == (7,)
    assert p[rtnl.IFLA_ADDRESS] == bytes.fromhex("0242ac110002")
    assert struct.unpack("=I", p[rtnl.IFLA_MTU]) == (1400,)


def test_address_with_its_broadcast_and_the_default_route() -> None:
    _, _, body = rtnl.addr_request(3, "172.17.0.2", 16)
    fam, plen, _flags, scope, index = rtnl._IFADDR.unpack_from(body)
    assert (fam, plen, scope, index) == (socket.AF_INET, 16, rtnl.RT_SCOPE_UNIVERSE, 3)
    a = attrs(body[rtnl._IFADDR.size:])
    assert a[rtnl.IFA_LOCAL] == a[rtnl.IFA_ADDRESS] == socket.inet_aton("172.17.0.2")
    assert a[rtnl.IFA_BROADCAST] == socket.inet_aton("172.17.255.255")
    for plen in (31, 32):   # point-to-point and host addresses have no broadcast
        assert rtnl.IFA_BROADCAST not in attrs(rtnl.addr_request(3, "10.0.0.1", plen)[2][rtnl._IFADDR.size:])
    _, _, route = rtnl.default_route_request("172.17.0.1")
    fields = rtnl._RTMSG.unpack_from(route)
    assert fields[:2] == (socket.AF_INET, 0) and fields[4:8] == (rtnl.RT_TABLE_MAIN, rtnl.RTPROT_BOOT,
                                                                 rtnl.RT_SCOPE_UNIVERSE, rtnl.RTN_UNICAST)
    assert attrs(route[rtnl._RTMSG.size:])[rtnl.RTA_GATEWAY] == socket.inet_aton("172.17.0.1")


def test_attributes_are_padded_to_four_bytes() -> None:
    assert rtnl.attr(3, b"eth0\0") == struct.pack("=HH", 9, 3) + b"eth0\0" + b"\0\0\0"
    assert len(rtnl.attr(1, b"abcd")) == 8


def test_the_kernels_reason_is_read_from_an_extended_ack() -> None:
    why = rtnl.attr(rtnl.NLMSGERR_ATTR_MSG, b"ipv4: Device not found\0")
    body = struct.pack("=i", -19) + rtnl._HDR.pack(40, rtnl.RTM_NEWADDR, 0x605, 2, 0) + why
    msg = rtnl._HDR.pack(rtnl._HDR.size + len(body), rtnl.NLMSG_ERROR, 0x100 | rtnl.NLM_F_ACK_TLVS, 2, 0) + body
    assert rtnl._ext_ack(msg) == "ipv4: Device not found"
    assert rtnl._ext_ack(msg[:rtnl._HDR.size + 4 + rtnl._HDR.size]) == ""
