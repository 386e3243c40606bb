"""The shim's control protocol (shared by the shim and the engine's client; pure).

One Unix socket per shim (``<exec-root>/shims/<id>.sock``). Each connection opens with one
JSON line, the request. Replies are JSON lines, except after an accepted ``attach``, where
the connection becomes a stream: shim -> client carries output (Docker's 8-byte stdcopy
frames without a tty, raw bytes with one), client -> shim carries stdin, and the client's
half-close means "no more stdin from me".

Requests:
    {"op": "start"}                       -> {"ok": true} | {"error": "..."}
    {"op": "attach", "stdin": b, "stdout": b, "stderr": b}
                                          -> {"ok": true}, then the stream
    {"op": "wait"}                        -> {"exit_code": n, "oom_killed": b, "finished_at": "..."}
                                             when the init has exited
    {"op": "kill", "signal": n}           -> {"ok": true} | {"error": "..."}
    {"op": "state"}                       -> {"pid": n, "status": "created|running|exited"}
    {"op": "resize", "h": n, "w": n[, "exec": id]}
                                          -> {"ok": true} | {"error": "..."} (the container's or
                                             an exec's terminal)
    {"op": "exec", "id": exec id, "args": [...], "env": [...], "cwd": s, "user": s, "tty": b,
     "privileged": b, "stdin": b}         -> {"pid": n} | {"error": "...", "exit_code": n}, then
                                             the stream: stdin up; down, *always* stdcopy
                                             frames (1 stdout, 2 stderr; raw pty bytes as 1),
                                             ending with one frame of stream EXIT whose payload
                                             is {"exit_code": n}; then the shim closes it.

The fork server (``<exec-root>/forkserver.sock``) takes one JSON line, a SpawnRequest, and
the new shim answers on the same connection with one line: {"pid": init pid, "shim_pid": n}
or {"error": "..."}.
"""

from __future__ import annotations

import msgspec


class SpawnRequest(msgspec.Struct):
    id: str
    bundle: str            # container dir; config.json inside
    socket: str            # the shim's control socket
    log: str               # json-file log path ("": the "none" driver, no log)
    exit_file: str         # where the exit status is recorded
    stdin: bool = False    # keep a pipe to the container's stdin
    stdin_once: bool = False
    tty: bool = False
    seccomp_cache: str | None = None
    console_size: list[int] | None = None  # [rows, cols] of the first terminal size
    log_max_size: int = -1  # rotate the log when it reaches this many bytes (-1: never)
    log_max_file: int = 1   # files kept, the live one included (1: truncate instead)
    log_compress: bool = False  # gzip rotated files (log.1.gz ...)


class ExitStatus(msgspec.Struct):
    exit_code: int
    oom_killed: bool = False
    finished_at: str = ""
    error: str = ""


STDOUT = 1
STDERR = 2
EXIT = 3  # an exec stream's last frame: {"exit_code": n}


def frame(stream: int, data: bytes) -> bytes:
    """Docker's stdcopy header: [stream, 0, 0, 0, size uint32 big-endian] + payload."""
    n = len(data)
    return bytes((stream, 0, 0, 0, (n >> 24) & 0xFF, (n >> 16) & 0xFF, (n >> 8) & 0xFF, n & 0xFF)) + data
