"""The shim's wire protocol: every message between berthd and a shim, as versioned Structs (pure).

One Unix socket per shim (``<exec-root>/shims/<id>.sock``). Each connection opens with one
JSON line, a ``Request`` (tagged by ``op``). Replies are JSON lines, except after an accepted
``attach`` or ``exec``, where the connection becomes a stream: shim -> client carries output
(Docker's 8-byte stdcopy frames without a tty, raw bytes with one; always frames for an exec),
client -> shim carries stdin, and the client's half-close means "no more stdin from me".

    Start                      -> Reply(ok) | Reply(error)
    Attach(stdin, stdout, stderr)
                               -> Reply(ok), then the stream
    Wait                       -> ExitStatus, once the init has exited
    Kill(signal)               -> Reply(ok) | Reply(error)
    State                      -> StateReply(pid, status: created|running|exited)
    Resize(h, w[, exec])       -> Reply(ok) | Reply(error) (the container's or an exec's terminal)
    ReopenLog                  -> Reply(ok) | Reply(error) (the CRI log, at its path again: the
                                  kubelet renamed it; protocol 3, an older shim answers an error)
    Exec(id, args, env, cwd, user, tty, privileged, stdin)
                               -> ExecReply(pid) | ExecReply(error, exit_code), then the
                                  stream: stdin up; down stdcopy frames (1 stdout, 2 stderr;
                                  raw pty bytes as 1), ending with one frame of stream EXIT
                                  whose payload is an ExecExit; then the shim closes it.

The fork server (``<exec-root>/forkserver.sock``) takes one JSON line, a SpawnRequest, and the
new shim answers on the same connection with one SpawnReply line. berthd then releases the
init with a Start line on that connection (it may send it before the SpawnReply came: the
shim starts the init once it is set up), answered there with the start's Reply; a hang-up
before Start aborts the container. With ``SpawnRequest.attach``, the connection is an attach
stream right after a successful start's Reply (subscribed before the init ran: no output is
missed). (Fork server and shim are always berthd's own version.)

Versions. A container's shim outlives berthd (live restore), so a new berthd talks to shims an
older berthd started, and the other way round after a downgrade. Every message carries ``v``,
the sender's protocol version; a message without it comes from protocol 1, the plain JSON
dicts of berth up to commit 45c91bb (the same field names: version 2 only added ``v``). Rules
that keep both directions working: a receiver ignores fields it does not know and defaults
the ones it misses; a field is never renamed or retyped, only added with a default; fields
at their default are left out of the line (protocol 1 tested some keys for presence); a new
op needs a new version, and its sender checks the peer's ``v`` first.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

# the framing of attach and exec streams (re-exported: the shim's users speak it too)
from berth.schema.stdcopy import STDERR as STDERR, STDOUT as STDOUT, frame as frame

VERSION = 3
EXIT = 3  # an exec stream's last frame: {"exit_code": n} (Docker's systemerr number)


class Message(msgspec.Struct, kw_only=True, omit_defaults=True):
    v: int = 1  # the sender's protocol version; absent on the wire: protocol 1


# -- berthd -> shim -------------------------------------------------------------------------


class Request(Message, tag_field="op"):
    """A control connection's first line."""


class Start(Request, tag="start"):
    """Release the init (it waits between create and start)."""


class Attach(Request, tag="attach"):
    stdin: bool = False
    stdout: bool = False
    stderr: bool = False


class Wait(Request, tag="wait"):
    """Answered with an ExitStatus once the init has exited."""


class Kill(Request, tag="kill"):
    signal: int = 15


class State(Request, tag="state"):
    pass


class Resize(Request, tag="resize"):
    h: int = 0
    w: int = 0
    exec: str | None = None  # an exec's id: resize its terminal, not the container's


class Exec(Request, tag="exec"):
    id: str = ""
    args: list[str] = []
    env: list[str] = []
    cwd: str = ""
    user: str = ""
    tty: bool = False
    privileged: bool = False
    stdin: bool = False


class ReopenLog(Request, tag="reopen_log"):
    """Close the CRI log and open a new file at its path (the kubelet's ReopenContainerLog)."""


AnyRequest = Start | Attach | Wait | Kill | State | Resize | Exec | ReopenLog


class _Op(msgspec.Struct):
    """Just the op of a request line that is not one of AnyRequest (for the error reply)."""

    op: object = None


# -- shim -> berthd -------------------------------------------------------------------------


class Reply(Message):
    """The answer to Start, Attach, Kill and Resize."""

    ok: bool = False
    error: str | None = None


class StateReply(Message):
    pid: int = 0
    status: str = ""
    error: str | None = None


class ExecReply(Message):
    pid: int = 0
    error: str | None = None
    exit_code: int = 126  # with error: the exec did not start


class ExecExit(Message):
    """The payload of an exec stream's last frame (stream EXIT)."""

    exit_code: int | None = None


class ExitStatus(Message):
    """The init's exit: the Wait reply, and ``exit.json`` in the container's directory."""

    exit_code: int
    oom_killed: bool = False
    finished_at: str = ""
    error: str = ""


# -- berthd -> fork server -> shim ----------------------------------------------------------


class RemoteLog(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A log driver that sends lines away (``shim.logsinks``), its options resolved by berthd."""

    driver: str                      # "syslog" or "journald"
    address: str = ""                # syslog: tcp://h:p, udp://h:p, unix:///p, unixgram:///p, "" (/dev/log ...);
                                     # journald: the journal socket's path
    format: str = ""                 # syslog-format ("" rfc3164 rfc5424 rfc5424micro)
    facility: int = 3                # syslog-facility's number (daemon)
    tag: str = ""
    fields: dict[str, str] = msgspec.field(default_factory=dict)  # journald: CONTAINER_ID, ...
    tls_ca: str = ""                 # syslog tcp+tls: syslog-tls-ca-cert ("" = the system's CAs),
    tls_cert: str = ""               # syslog-tls-cert and -key (a client certificate),
    tls_key: str = ""
    tls_skip_verify: bool = False    # syslog-tls-skip-verify given (any value, as dockerd)


class SpawnRequest(Message):
    id: str
    bundle: str            # container dir; config.json inside
    socket: str            # the shim's control socket
    log: str               # json-file log path ("": the "none" driver, no log)
    exit_file: str         # where the exit status is recorded
    exit_sync: bool = True  # fsync it; False for --rm: the container is removed right after its
                            # exit, and after a host crash berthd removes it without the record
    stdin: bool = False    # keep a pipe to the container's stdin
    stdin_once: bool = False
    tty: bool = False
    seccomp_cache: str | None = None
    console_size: list[int] | None = None  # [rows, cols] of the first terminal size
    log_max_size: int = -1  # rotate the log when it reaches this many bytes (-1: never)
    log_max_file: int = 1   # files kept, the live one included (1: truncate instead)
    log_compress: bool = False  # gzip rotated files (log.1.gz ...)
    remote_log: RemoteLog | None = None  # syslog / journald instead of a file (then log is "")
    runtime_path: str = ""  # an external OCI runtime's binary (runc, crun); "": berth's own
    runtime_root: str = ""  # its state directory (--root)
    runtime_args: list[str] = []  # its global options (daemon.json's runtimeArgs)
    cri_log: str = ""       # also log in the CRI format here (a kubelet's container log path)
    attach: Attach | None = None  # an attach client waits for this start (``docker run``): the
                                  # spawn connection becomes its stream with the start's Reply


class SpawnReply(Message):
    pid: int = 0           # the init's
    shim_pid: int = 0
    error: str | None = None


# -- encoding -------------------------------------------------------------------------------

_encoder = msgspec.json.Encoder()
_requests = msgspec.json.Decoder(AnyRequest)
_ops = msgspec.json.Decoder(_Op)


def encode(msg: Message) -> bytes:
    """One line of the wire: ``msg`` stamped with this side's version, and a newline."""
    if msg.v != VERSION:
        msg = msgspec.structs.replace(msg, v=VERSION)
    return _encoder.encode(msg) + b"\n"


def decode_request(line: bytes) -> AnyRequest | str:
    """A request line, or the error to answer it with. Raises msgspec.DecodeError on a line
    that is not JSON at all (the connection is then dropped)."""
    try:
        req: AnyRequest = _requests.decode(line)
        return req
    except msgspec.ValidationError as e:
        try:
            op = _ops.decode(line).op
        except msgspec.ValidationError:
            op = None
        known = op in ("start", "attach", "wait", "kill", "state", "resize", "exec")
        return f"bad {op} request: {e}" if known else f"unknown op {op!r}"


_M = TypeVar("_M", bound=Message)
# made once, in the fork server: the shims share them
_decoders: dict[type[Message], msgspec.json.Decoder[Any]] = {
    k: msgspec.json.Decoder(k) for k in (Reply, StateReply, ExecReply, ExecExit, ExitStatus, SpawnRequest, SpawnReply)}


def decode(line: bytes, kind: type[_M]) -> _M:
    """One reply line (or a SpawnRequest) as ``kind``; raises msgspec.DecodeError."""
    result: _M = _decoders[kind].decode(line)
    return result
