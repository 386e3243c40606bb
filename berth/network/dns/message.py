"""Just enough of the DNS wire format (RFC 1035) to answer A and AAAA queries (pure).

A query is parsed into its id, flags and first question; an answer echoes the question and
carries A or AAAA records (RFC 3596) (compressed name pointer to the question). Anything else a server needs
(forwarding) handles the raw bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

TYPE_A = 1
TYPE_AAAA = 28
TYPE_PTR = 12
CLASS_IN = 1
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
TTL = 600


class BadMessage(ValueError):
    pass


@dataclass(frozen=True)
class Question:
    id: int
    flags: int
    name: str        # lowercase, no trailing dot
    qtype: int
    qclass: int
    end: int         # offset just past the question


def parse_query(data: bytes) -> Question:
    if len(data) < 12:
        raise BadMessage("short header")
    qid, flags, qd = struct.unpack("!HHH", data[:6])
    if flags & 0x8000 or qd < 1:
        raise BadMessage("not a query")
    labels, i = [], 12
    while True:
        if i >= len(data):
            raise BadMessage("truncated name")
        n = data[i]
        i += 1
        if n == 0:
            break
        if n & 0xC0:
            raise BadMessage("compressed name in question")
        labels.append(data[i:i + n].decode("ascii", errors="replace"))
        i += n
    if i + 4 > len(data):
        raise BadMessage("truncated question")
    qtype, qclass = struct.unpack("!HH", data[i:i + 4])
    return Question(qid, flags, ".".join(labels).lower(), qtype, qclass, i + 4)


def answer(query: bytes, q: Question, addrs: list[IPv4Address | IPv6Address], rcode: int = NOERROR) -> bytes:
    """A response to ``query`` with these A (IPv4) and AAAA (IPv6) records (none for NODATA
    or an error rcode)."""
    flags = 0x8000 | (q.flags & 0x7900) | 0x0080 | 0x0400 | rcode  # QR, opcode+RD, RA, AA
    header = struct.pack("!HHHHHH", q.id, flags, 1, len(addrs), 0, 0)
    out = bytearray(header + query[12:q.end])
    for a in addrs:
        rtype = TYPE_A if a.version == 4 else TYPE_AAAA
        out += struct.pack("!HHHIH", 0xC00C, rtype, CLASS_IN, TTL, len(a.packed)) + a.packed
    return bytes(out)


def error(query: bytes, rcode: int) -> bytes:
    """The shortest possible error reply (header only) for a query we could not parse."""
    qid = struct.unpack("!H", query[:2])[0] if len(query) >= 2 else 0
    return struct.pack("!HHHHHH", qid, 0x8000 | 0x0080 | rcode, 0, 0, 0, 0)
