"""The embedded DNS server's message handling and lookups (no sockets)."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address as A

from berth.network.dns import message as msg
from berth.network.dns.server import DnsServer


def query(name: str, qtype: int = msg.TYPE_A, qid: int = 0x1234) -> bytes:
    q = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + q + struct.pack("!HH", qtype, 1)


def test_parse_and_answer():
    data = query("Web.Example")
    q = msg.parse_query(data)
    assert (q.id, q.name, q.qtype) == (0x1234, "web.example", msg.TYPE_A)
    reply = msg.answer(data, q, [A("172.18.0.2"), A("172.18.0.3")])
    qid, flags, qd, an = struct.unpack("!HHHH", reply[:8])
    assert qid == 0x1234 and flags & 0x8000 and flags & 0x0100 and flags & 0xF == 0 and (qd, an) == (1, 2)
    assert reply.endswith(A("172.18.0.3").packed)


def test_server_answers_known_names_and_defers_the_rest():
    names = {"web": [A("172.18.0.2")]}

    def lookup(cid, name):
        return names.get(name), True

    srv = DnsServer(lookup, upstreams=["192.0.2.53"])
    reply = srv.answer_local("c1", query("web"))
    assert struct.unpack("!H", reply[6:8])[0] == 1
    reply = srv.answer_local("c1", query("web", msg.TYPE_AAAA))   # known name, no IPv6: NODATA
    assert struct.unpack("!HH", reply[2:4] + reply[6:8])[1] == 0 and reply[3] & 0xF == 0
    assert srv.answer_local("c1", query("example.org")) is None   # forwarded
    assert srv.answer_local("c1", b"\x00") is not None            # FORMERR


def test_internal_networks_do_not_forward():
    srv = DnsServer(lambda cid, name: (None, False), upstreams=["192.0.2.53"])
    reply = srv.answer_local("c1", query("example.org"))
    assert reply[3] & 0xF == msg.NXDOMAIN


def test_aaaa_answers_the_ipv6_addresses_and_a_the_ipv4_ones():
    from ipaddress import IPv6Address
    names = {"web": [A("172.18.0.2"), IPv6Address("fd00:1::2")]}
    srv = DnsServer(lambda cid, name: (names.get(name), True), upstreams=[])
    reply = srv.answer_local("c1", query("web", msg.TYPE_AAAA))
    assert struct.unpack("!H", reply[6:8])[0] == 1
    rtype, _, _, rdlen = struct.unpack("!HHIH", reply[-16 - 10:-16])
    assert (rtype, rdlen) == (msg.TYPE_AAAA, 16) and reply.endswith(IPv6Address("fd00:1::2").packed)
    reply = srv.answer_local("c1", query("web"))
    assert struct.unpack("!H", reply[6:8])[0] == 1 and reply.endswith(A("172.18.0.2").packed)
