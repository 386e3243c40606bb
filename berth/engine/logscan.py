"""json-file log lines -> what ``docker logs`` sends, without a JSON decode per line.

The shim writes one record per line, always in this shape (Docker's, field order included):

    {"log":"<payload, JSON-escaped>","stream":"stdout","time":"2025-01-02T03:04:05.123456789Z"}

A block of whole lines is *plain* when every line has that shape and its only backslash is the
payload's trailing ``\\n`` escape: a few counts over the whole block (C loops) prove it, and the
lines are then sliced with bytes operations. Other blocks go line by line: the same slicing
where the payload needs no unescaping, a json decode of the payload string where it does, and a
whole-line json decode for anything else (partial lines, attrs, files written by dockerd).

Times compare as bytes: a *time key* is the fixed 30-byte RFC 3339 UTC form with nanoseconds
(``time_key("1700000000.5") == b"2023-11-14T22:13:20.500000000Z"``).
"""

from __future__ import annotations

import json
import re
import struct
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from berth.errors import InvalidArgument

_HDR = struct.Struct(">BxxxL").pack  # Docker's stdcopy header: stream, 3 zero bytes, size
_PREFIX = b'{"log":"'
_NL_STREAM = b'\\n","stream":"std'  # a plain line's payload end (the ``\n`` escape) and stream
_TIME_AT = len(b'\\n","stream":"stdout","time":"')  # the time, counted from that backslash
_STREAM_AT = len(b'\\n","stream":"std')  # b"o" (stdout) or b"e" (stderr)
_KEY_LEN = 30
_SPLIT_MIN = 1 << 13  # a block with escapes is halved down to this size before going line by line
_UNIX = re.compile(r"(\d+)(?:\.(\d*))?")


@dataclass(frozen=True)
class Filter:
    stdout: bool = True
    stderr: bool = True
    since: bytes | None = None  # time keys; lines with since <= time <= until
    until: bytes | None = None
    timestamps: bool = False  # prefix each payload with its time key and a space
    raw: bool = False  # a tty container: payloads without stdcopy headers

    @property
    def passthrough(self) -> bool:
        """Every line goes out as it is: no selection, no timestamps."""
        return self.stdout and self.stderr and self.since is None and self.until is None and not self.timestamps


_MAX_SECS = 253402300799  # 9999-12-31T23:59:59Z: the last time a key's text can hold


def _key_of(secs: int, frac: str) -> bytes:
    if secs > _MAX_SECS:  # Go's times go further (dockerd takes them): no line is that late
        secs, frac = _MAX_SECS, "999999999"
    return (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + "." + (frac + "000000000")[:9] + "Z").encode()


def time_key(v: str | bytes | None) -> bytes | None:
    """Docker's since/until (unix seconds with a fraction, or RFC 3339) or a log line's time, as a
    time key; None for none ("", "0"). Raises InvalidArgument for a value that is neither."""
    if isinstance(v, bytes):
        if len(v) == _KEY_LEN and v[-1:] == b"Z" and v[19:20] == b".":
            return v
        v = v.decode("ascii", "replace")
    if v is None or v == "" or v == "0":
        return None
    m = _UNIX.fullmatch(v)
    if m:
        return _key_of(int(m.group(1)), m.group(2) or "")
    s, frac = v.replace("Z", "+00:00"), ""
    fm = re.search(r"\.(\d+)", s)
    if fm:
        frac, s = fm.group(1), s[:fm.start()] + s[fm.end():]
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise InvalidArgument(f'invalid value for "since": failed to parse value as time or duration: "{v}"') from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return _key_of(int(dt.timestamp()), frac)


def line_time(line: bytes) -> bytes | None:
    """The time key of one log line (for seeking), None when it has none."""
    i = line.rfind(b'"time":"')
    if i < 0:
        return None
    return _safe_key(line[i + 8:line.find(b'"', i + 8)]) or None


def _safe_key(t: bytes) -> bytes:
    try:
        return time_key(t) or b""
    except InvalidArgument:
        return b""


def is_plain(block: bytes) -> bool:
    """Every line of ``block`` (whole lines) has the shim's shape and no escape but the last ``\\n``."""
    n = block.count(b"\n")
    return (n > 0 and block[-1:] == b"\n" and block.count(b"\\") == n and block.count(_NL_STREAM) == n
            and block.count(_PREFIX) == n)


def _record(line: bytes) -> tuple[int, bytes, bytes] | None:
    """(stream, time, payload) of one line of any shape; None for a line that is not a record."""
    j = line.rfind(b'","stream":"std')
    if line.startswith(_PREFIX) and j > 0:
        rest = line[j + 12:]
        if rest[6:16] == b'","time":"' and rest[-2:] == b'"}' and rest[:6] in (b"stdout", b"stderr"):
            raw = line[8:j]
            p: bytes | None = raw
            if raw[-2:] == b"\\n" and raw.find(b"\\", 0, len(raw) - 2) < 0:
                p = raw[:-2] + b"\n"
            elif b"\\" in raw:
                try:
                    p = json.loads(b'"' + raw + b'"').encode("utf-8", "replace")
                except ValueError:
                    p = None
            if p is not None:
                return (1 if rest[3] == 111 else 2), rest[16:-2], p
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    if not isinstance(rec, dict):
        return None
    stream = 1 if rec.get("stream") == "stdout" else 2
    return stream, str(rec.get("time", "")).encode(), str(rec.get("log", "")).encode("utf-8", "replace")


def records(block: bytes) -> list[tuple[int, bytes, bytes]]:
    """(stream, time, payload) of each line of ``block`` (whole lines)."""
    lines = block.split(b"\n")
    lines.pop()
    if is_plain(block):
        return [(2 if line[(j := line.rfind(b"\\")) + _STREAM_AT] == 101 else 1, line[j + _TIME_AT:-2],
                 line[8:j] + b"\n") for line in lines]
    return [r for r in map(_record, lines) if r is not None]


def render(block: bytes, flt: Filter) -> list[bytes]:
    """What is sent for each selected line of ``block`` (whole lines): a stdcopy frame, or the bare
    payload for a tty; one piece per line (Docker frames each log line on its own)."""
    if flt.passthrough:
        if is_plain(block):
            lines = block.split(b"\n")
            lines.pop()
            if flt.raw:
                return [line[8:line.rfind(b"\\")] + b"\n" for line in lines]
            return [_HDR(2 if line[(j := line.rfind(b"\\")) + _STREAM_AT] == 101 else 1, j - 7) + line[8:j] + b"\n"
                    for line in lines]
        if len(block) > _SPLIT_MIN:  # a few escaped lines: keep the plain runs around them fast
            mid = block.find(b"\n", len(block) // 2) + 1
            if 0 < mid < len(block):
                return render(block[:mid], flt) + render(block[mid:], flt)
    if flt.raw:
        return [p for _s, p in select(block, flt)]
    return [_HDR(s, len(p)) + p for s, p in select(block, flt)]


def select(block: bytes, flt: Filter) -> list[tuple[int, bytes]]:
    """(stream, payload) of each selected line of ``block`` (whole lines), timestamped if asked."""
    out: list[tuple[int, bytes]] = []
    since, until = flt.since, flt.until
    for stream, t, p in records(block):
        if not (flt.stdout if stream == 1 else flt.stderr):
            continue
        if since is not None or until is not None or flt.timestamps:
            k = t if len(t) == _KEY_LEN else _safe_key(t)
            if (since is not None and k < since) or (until is not None and k > until):
                continue
            if flt.timestamps:
                p = k + b" " + p
        out.append((stream, p))
    return out
