"""A request's head (its lines, its /vX.Y prefix) and the framing of its body (RFC 9112 §6-7):
Content-Length, and the chunked coding read as strictly as Go's net/http reads it, since what a
parser takes in excess becomes the next request on a keep-alive connection. ``BadRequest`` is
the API's 400 for a malformed request.

No asyncio at import: ``api.early`` parses heads with this module before the loop exists."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

_HEX = re.compile(rb"[0-9a-fA-F]{1,16}")
_CRLF = (b"\r\n", b"\n")


class BadRequest(Exception):
    pass


VERSION_PREFIX = re.compile(r"^/v(\d+\.\d+)(/.*)$")


def parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]] | None:
    """(method, target, protocol, headers with lower-case names) of a request head; None when
    its request line does not have three parts."""
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, proto = lines[0].split(" ", 2)
    except ValueError:
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return method, target, proto, headers


def check_version(v: str, lo: str, hi: str) -> None:
    """Docker's version middleware: a prefix outside [lo, hi] is a 400, in its words."""
    if version_tuple(v) > version_tuple(hi):
        raise BadRequest(f"client version {v} is too new. Maximum supported API version is {hi}")
    if version_tuple(v) < version_tuple(lo):
        raise BadRequest(f"client version {v} is too old. Minimum supported API version is {lo}, "
                         "please upgrade your client to a newer version")


def version_tuple(v: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in v.split("."))
    except ValueError:
        return (0,)


class TooLarge(BadRequest):
    """A body past what berth buffers (413; the connection closes: the rest is not read)."""


def content_length(value: str) -> int | None:
    """A Content-Length header's value; None when it is not a plain decimal number (Python's
    int() also takes signs, ``_`` and non-ASCII digits)."""
    v = value.strip()
    return int(v) if v.isascii() and v.isdigit() else None


def chunk_size(line: bytes) -> int:
    """A chunk-size line (``1a;ext=v``): hex digits only, no sign, no ``0x``, no ``_``."""
    size = line.split(b";", 1)[0].strip(b" \t\r\n")
    if not _HEX.fullmatch(size):
        raise BadRequest("bad chunk size")
    return int(size, 16)


async def read_chunk(reader: asyncio.StreamReader, left: int, size: int) -> tuple[bytes, int]:
    """The next piece (at most ``size`` bytes) of a chunked body whose current chunk has
    ``left`` bytes to go: (data, bytes still left in its chunk); b"" at the body's end, after
    its trailers."""
    if left == 0:
        left = chunk_size(await _line(reader))
        if left == 0:
            while (await _line(reader)) not in (*_CRLF, b""):
                pass  # trailers
            return b"", 0
    data = await reader.read(min(size, left))
    if not data:
        raise BadRequest("unexpected end of request body")
    left -= len(data)
    if left == 0 and (await _line(reader)) not in _CRLF:
        raise BadRequest("malformed chunked encoding")
    return data, left


async def _line(reader: asyncio.StreamReader) -> bytes:
    """One line of the framing (b"" or a partial line at the end); one past the reader's
    limit is refused."""
    import asyncio  # loaded: the reader is asyncio's
    try:
        return await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as e:
        return e.partial
    except asyncio.LimitOverrunError:
        raise BadRequest("malformed chunked encoding: line too long") from None
