"""Docker's multiplexed stream framing (``stdcopy``) used by attach, exec and logs without a tty.

Each frame is ``[stream, 0, 0, 0, size (uint32 big-endian)]`` followed by ``size`` bytes;
stream 0 = stdin (written back to stdout), 1 = stdout, 2 = stderr, 3 = systemerr (an error text
from the daemon, which ends the stream).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


STDIN, STDOUT, STDERR, SYSTEMERR = 0, 1, 2, 3
HEADER_LEN = 8


class StreamError(Exception):
    """A systemerr frame, or a header with an unknown stream number."""


class Demuxer:
    """Incremental decoder: feed bytes as they arrive, get (stream, payload) pairs back."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> Iterator[tuple[int, bytes]]:
        self._buf += data
        while len(self._buf) >= HEADER_LEN:
            stream = self._buf[0]
            size = int.from_bytes(self._buf[4:8], "big")
            if len(self._buf) < HEADER_LEN + size:
                return
            payload = bytes(self._buf[HEADER_LEN:HEADER_LEN + size])
            del self._buf[:HEADER_LEN + size]
            if stream > SYSTEMERR:
                raise StreamError(f"Unrecognized input header: {stream}")
            yield (STDOUT if stream == STDIN else stream), payload

    @property
    def pending(self) -> int:
        return len(self._buf)


def frame(stream: int, payload: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(payload).to_bytes(4, "big") + payload


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
