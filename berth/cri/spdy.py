"""SPDY/3.1 framing (no I/O): the frames, their bytes, and the zlib header compression.

The kubelet's streaming clients (client-go's ``spdystream``) speak SPDY/3.1 after an HTTP
``Upgrade: SPDY/3.1``; no maintained Python library does, so this module holds the wire
format of the SPDY/3.1 draft (https://www.chromium.org/spdy/spdy-protocol/spdy-protocol-draft3-1/):

    control frame:  |1| version (15) = 3 | type (16) | flags (8) | length (24) | payload
    data frame:     |0| stream id (31)               | flags (8) | length (24) | payload

Header blocks (SYN_STREAM, SYN_REPLY, HEADERS) are ``count, (len name, len value)*`` with
32-bit big-endian lengths, several values of one name joined by NUL, names lower case; each
direction of a connection compresses them with one zlib stream primed with the SPDY/3
dictionary, every block ending on a sync flush.

    codec = Codec()
    wire = codec.encode(SynReply(1, [("streamtype", "error")]))
    frames = codec.feed(received_bytes)   # complete frames; a partial one stays buffered
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN, FLAG_UNIDIRECTIONAL, FLAG_CLEAR_SETTINGS = 0x01, 0x02, 0x01
# RST_STREAM status codes
PROTOCOL_ERROR, INVALID_STREAM, REFUSED_STREAM, UNSUPPORTED_VERSION, CANCEL, INTERNAL_ERROR = 1, 2, 3, 4, 5, 6
FLOW_CONTROL_ERROR, STREAM_IN_USE, STREAM_ALREADY_CLOSED, FRAME_TOO_LARGE = 7, 8, 9, 11
# GOAWAY status codes
GOAWAY_OK, GOAWAY_PROTOCOL_ERROR, GOAWAY_INTERNAL_ERROR = 0, 1, 2
SETTINGS_INITIAL_WINDOW_SIZE = 7
DEFAULT_WINDOW = 65536
MAX_LENGTH = (1 << 24) - 1
MAX_HEADERS = 1 << 20  # decompressed header block bytes accepted

# The SPDY/3 header dictionary (the draft's section 2.6.10.1): these words, each after its
# 32-bit length, then the text below. zlib's DICTID of it is 0xe3c6a7c2.
_WORDS = (
    "options head post put delete trace accept accept-charset accept-encoding accept-language "
    "accept-ranges age allow authorization cache-control connection content-base content-encoding "
    "content-language content-length content-location content-md5 content-range content-type date "
    "etag expect expires from host if-match if-modified-since if-none-match if-range "
    "if-unmodified-since last-modified location max-forwards pragma proxy-authenticate "
    "proxy-authorization range referer retry-after server te trailer transfer-encoding upgrade "
    "user-agent vary via warning www-authenticate method get status").split() + ["200 OK"] + \
    "version HTTP/1.1 url public set-cookie keep-alive origin".split()
_TEXT = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request"
    "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented"
    "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 "
    "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,"
    "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age="
    "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.")
DICTIONARY = b"".join(struct.pack(">I", len(w)) + w.encode() for w in _WORDS) + _TEXT.encode()

Headers = list[tuple[str, str]]


class SpdyError(Exception):
    """A frame this side cannot take: the connection ends with GOAWAY ``status``."""

    def __init__(self, message: str, status: int = GOAWAY_PROTOCOL_ERROR):
        super().__init__(message)
        self.status = status


@dataclass
class Data:
    stream_id: int
    data: bytes = b""
    flags: int = 0

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


@dataclass
class SynStream:
    stream_id: int
    headers: Headers = field(default_factory=list)
    flags: int = 0
    associated_id: int = 0
    priority: int = 0  # 0 (highest) to 7
    slot: int = 0

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


@dataclass
class SynReply:
    stream_id: int
    headers: Headers = field(default_factory=list)
    flags: int = 0


@dataclass
class RstStream:
    stream_id: int
    status: int


@dataclass
class Settings:
    entries: list[tuple[int, int, int]] = field(default_factory=list)  # (flags, id, value)
    flags: int = 0


@dataclass
class Ping:
    ping_id: int


@dataclass
class GoAway:
    last_good_stream_id: int
    status: int = GOAWAY_OK


@dataclass
class HeadersFrame:
    stream_id: int
    headers: Headers = field(default_factory=list)
    flags: int = 0


@dataclass
class WindowUpdate:
    stream_id: int  # 0: the whole connection (SPDY/3.1)
    delta: int


Frame = Data | SynStream | SynReply | RstStream | Settings | Ping | GoAway | HeadersFrame | WindowUpdate


def header(headers: Headers, name: str) -> str:
    """The first value of ``name`` (case-insensitive), or ""."""
    name = name.lower()
    return next((v for n, v in headers if n == name), "")


def pack_headers(headers: Headers) -> bytes:
    """The uncompressed name/value block: values of a repeated name are joined by NUL."""
    merged: dict[str, list[str]] = {}
    for n, v in headers:
        merged.setdefault(n.lower(), []).append(v)
    out = [struct.pack(">I", len(merged))]
    for n, vs in merged.items():
        nb, vb = n.encode(), "\0".join(vs).encode()
        out += [struct.pack(">I", len(nb)), nb, struct.pack(">I", len(vb)), vb]
    return b"".join(out)


def unpack_headers(block: bytes) -> Headers:
    try:
        (count,), pos, out = struct.unpack_from(">I", block), 4, []
        for _ in range(count):
            (n,) = struct.unpack_from(">I", block, pos)
            name = block[pos + 4:pos + 4 + n]
            pos += 4 + n
            (m,) = struct.unpack_from(">I", block, pos)
            value = block[pos + 4:pos + 4 + m]
            pos += 4 + m
            if len(name) != n or len(value) != m or not n:
                raise SpdyError("truncated or empty header name/value")
            out += [(name.decode("latin-1").lower(), v) for v in value.decode("latin-1").split("\0")]
    except struct.error as e:
        raise SpdyError(f"bad header block: {e}") from None
    return out


def _control(kind: int, flags: int, payload: bytes) -> bytes:
    if len(payload) > MAX_LENGTH:
        raise SpdyError("frame too large", GOAWAY_INTERNAL_ERROR)
    return struct.pack(">HHI", 0x8000 | VERSION, kind, flags << 24 | len(payload)) + payload


def data_frame(stream_id: int, data: bytes, fin: bool = False) -> bytes:
    if len(data) > MAX_LENGTH:
        raise SpdyError("frame too large", GOAWAY_INTERNAL_ERROR)
    return struct.pack(">II", stream_id & 0x7FFFFFFF, (FLAG_FIN if fin else 0) << 24 | len(data)) + data


class Codec:
    """One endpoint of a connection: frames to bytes and bytes to frames, with this
    endpoint's header compressor and its peer's decompressor (both stateful)."""

    def __init__(self) -> None:
        self._deflate = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY,
                                         DICTIONARY)
        self._inflate = zlib.decompressobj(15, DICTIONARY)
        self._buf = bytearray()

    def compress(self, headers: Headers) -> bytes:
        return self._deflate.compress(pack_headers(headers)) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    def decompress(self, block: bytes) -> Headers:
        try:
            raw = self._inflate.decompress(block, MAX_HEADERS)
        except zlib.error as e:
            raise SpdyError(f"bad header compression: {e}") from None
        if self._inflate.unconsumed_tail:
            raise SpdyError("header block too large")
        return unpack_headers(raw)

    def encode(self, f: Frame) -> bytes:
        if isinstance(f, Data):
            return data_frame(f.stream_id, f.data, f.fin)
        if isinstance(f, SynStream):
            head = struct.pack(">IIBB", f.stream_id & 0x7FFFFFFF, f.associated_id & 0x7FFFFFFF,
                               (f.priority & 7) << 5, f.slot)
            return _control(SYN_STREAM, f.flags, head + self.compress(f.headers))
        if isinstance(f, (SynReply, HeadersFrame)):
            kind = SYN_REPLY if isinstance(f, SynReply) else HEADERS
            return _control(kind, f.flags, struct.pack(">I", f.stream_id & 0x7FFFFFFF) + self.compress(f.headers))
        if isinstance(f, RstStream):
            return _control(RST_STREAM, 0, struct.pack(">II", f.stream_id & 0x7FFFFFFF, f.status))
        if isinstance(f, Settings):
            body = b"".join(struct.pack(">II", fl << 24 | i, v) for fl, i, v in f.entries)
            return _control(SETTINGS, f.flags, struct.pack(">I", len(f.entries)) + body)
        if isinstance(f, Ping):
            return _control(PING, 0, struct.pack(">I", f.ping_id))
        if isinstance(f, GoAway):
            return _control(GOAWAY, 0, struct.pack(">II", f.last_good_stream_id & 0x7FFFFFFF, f.status))
        return _control(WINDOW_UPDATE, 0, struct.pack(">II", f.stream_id & 0x7FFFFFFF, f.delta & 0x7FFFFFFF))

    def feed(self, data: bytes) -> list[Frame]:
        """The complete frames in what has arrived so far (unknown control types skipped)."""
        self._buf += data
        out: list[Frame] = []
        while len(self._buf) >= 8:
            first, second = struct.unpack_from(">II", self._buf)
            flags, length = second >> 24, second & 0xFFFFFF
            if len(self._buf) < 8 + length:
                break
            payload = bytes(self._buf[8:8 + length])
            del self._buf[:8 + length]
            if not first & 0x80000000:
                out.append(Data(first & 0x7FFFFFFF, payload, flags))
                continue
            if (first >> 16) & 0x7FFF != VERSION:
                raise SpdyError(f"unsupported SPDY version {(first >> 16) & 0x7FFF}")
            f = self._control(first & 0xFFFF, flags, payload)
            if f is not None:
                out.append(f)
        return out

    def _control(self, kind: int, flags: int, p: bytes) -> Frame | None:
        try:
            if kind == SYN_STREAM:
                sid, assoc, pri, slot = struct.unpack_from(">IIBB", p)
                return SynStream(sid & 0x7FFFFFFF, self.decompress(p[10:]), flags, assoc & 0x7FFFFFFF, pri >> 5, slot)
            if kind in (SYN_REPLY, HEADERS):
                (sid,) = struct.unpack_from(">I", p)
                cls = SynReply if kind == SYN_REPLY else HeadersFrame
                return cls(sid & 0x7FFFFFFF, self.decompress(p[4:]), flags)
            if kind == RST_STREAM:
                sid, status = struct.unpack(">II", p)
                return RstStream(sid & 0x7FFFFFFF, status)
            if kind == SETTINGS:
                (n,) = struct.unpack_from(">I", p)
                if len(p) != 4 + 8 * n:
                    raise SpdyError("bad SETTINGS length")
                pairs = [struct.unpack_from(">II", p, 4 + 8 * i) for i in range(n)]
                return Settings([(a >> 24, a & 0xFFFFFF, v) for a, v in pairs], flags)
            if kind == PING:
                return Ping(struct.unpack(">I", p)[0])
            if kind == GOAWAY:
                sid, status = struct.unpack(">II", p)
                return GoAway(sid & 0x7FFFFFFF, status)
            if kind == WINDOW_UPDATE:
                sid, delta = struct.unpack(">II", p)
                return WindowUpdate(sid & 0x7FFFFFFF, delta & 0x7FFFFFFF)
        except struct.error:
            raise SpdyError(f"bad length {len(p)} for control frame type {kind}") from None
        return None  # the draft: an unknown control frame is ignored
