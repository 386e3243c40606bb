"""Messages between ``container.create`` (parent) and the init (child), over CLOEXEC pipes.

    parent -> child (ctl pipe):    b"G" cgroup joined, go on;   b"S" start: execve now
    child -> parent (report pipe): Ready | SetupError   then, after b"S":  ExecError | EOF

Joining another container's user namespace with a new pid namespace, the child first sends
Forked: the pid of its own child, which goes on as the container's PID 1 while the first one
exits.

EOF on the report pipe after b"S" means execve succeeded (the pipe is CLOEXEC).
Frames are a 4-byte big-endian length and msgspec JSON.
"""

from __future__ import annotations

import os

import msgspec


class Ready(msgspec.Struct, tag=True):
    pass


class SetupError(msgspec.Struct, tag=True):
    step: str
    message: str
    errno: int = 0


class ExecError(msgspec.Struct, tag=True):
    message: str


class Forked(msgspec.Struct, tag=True):
    pid: int


Message = Ready | SetupError | ExecError | Forked
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Message)

GO = b"G"
START = b"S"


def send(fd: int, msg: Message) -> None:
    body = _encoder.encode(msg)
    data = len(body).to_bytes(4, "big") + body
    while data:
        data = data[os.write(fd, data):]


def _read_exact(fd: int, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def recv(fd: int) -> Message | None:
    """The next message, or None at EOF."""
    head = _read_exact(fd, 4)
    if head is None:
        return None
    body = _read_exact(fd, int.from_bytes(head, "big"))
    if body is None:
        return None
    message: Message = _decoder.decode(body)
    return message


def decode_framed(data: bytes) -> Message:
    """The one message at the start of ``data`` (all a child wrote before EOF)."""
    n = int.from_bytes(data[:4], "big")
    if len(data) < 4 + n:
        raise ValueError("short message")
    message: Message = _decoder.decode(data[4:4 + n])
    return message


def wait_byte(fd: int) -> bytes:
    """One control byte from the parent; b"" when the parent went away."""
    while True:
        try:
            return os.read(fd, 1)
        except InterruptedError:  # pragma: no cover (PEP 475 retries already)
            continue
