"""Docker's multiplexed stream framing (``stdcopy``): attach, exec and logs without a tty.

Each frame is ``[stream, 0, 0, 0, size (uint32 big-endian)]`` followed by ``size`` bytes;
stream 0 = stdin (written back to stdout), 1 = stdout, 2 = stderr, 3 = systemerr (an error text
from the daemon, which ends the stream).

The one implementation, shared by the shim (which writes frames), the API (which relays and
strips them) and the client (which demultiplexes them). Pure and stdlib-only, so the shim
pays nothing to import it: layering treats it as a leaf that every package may use.
"""

from __future__ import annotations

import struct

TYPE_CHECKING = False
if TYPE_CHECKING:  # collections.abc is not free at the CLI's start-up
    from collections.abc import Callable, Iterator

STDIN, STDOUT, STDERR, SYSTEMERR = 0, 1, 2, 3
HEADER_LEN = 8


class StreamError(Exception):
    """A systemerr frame, or a header with an unknown stream number."""


header = struct.Struct(">BxxxL").pack
"""header(stream, size) -> the 8 header bytes (a precompiled struct: hot in log streaming)."""


def frame(stream: int, payload: bytes) -> bytes:
    return header(stream, len(payload)) + payload


def parse_header(head: bytes | bytearray) -> tuple[int, int]:
    """(stream, payload size) of an 8-byte header."""
    return head[0], int.from_bytes(head[4:8], "big")


class Demuxer:
    """Incremental decoder: feed bytes as they arrive, get (stream, payload) pairs back.

    ``strict`` applies the client's rules: stdin frames count as stdout, and a stream number
    above systemerr is a corrupt stream (StreamError). Relays use ``strict=False``.
    """

    def __init__(self, strict: bool = True) -> None:
        self._buf = bytearray()
        self.strict = strict

    def feed(self, data: bytes) -> Iterator[tuple[int, bytes]]:
        self._buf += data
        while len(self._buf) >= HEADER_LEN:
            stream, size = parse_header(self._buf)
            if len(self._buf) < HEADER_LEN + size:
                return
            payload = bytes(self._buf[HEADER_LEN:HEADER_LEN + size])
            del self._buf[:HEADER_LEN + size]
            if self.strict:
                if stream > SYSTEMERR:
                    raise StreamError(f"Unrecognized input header: {stream}")
                stream = STDOUT if stream == STDIN else stream
            yield stream, payload

    @property
    def pending(self) -> int:
        return len(self._buf)


def copy(read: Callable[[], bytes], write_out: Callable[[bytes], object],
         write_err: Callable[[bytes], object]) -> None:
    """Demultiplex everything ``read`` returns (until b"") to the two writers.

    Raises:
        StreamError: the daemon sent a systemerr frame or a corrupt header.
    """
    demux = Demuxer()
    while True:
        data = read()
        if not data:
            return
        for stream, payload in demux.feed(data):
            if stream == STDOUT:
                write_out(payload)
            elif stream == STDERR:
                write_err(payload)
            else:
                raise StreamError(payload.decode("utf-8", "replace"))
