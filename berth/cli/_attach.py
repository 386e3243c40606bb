"""Pumping an attached container stream: stdin up, stdout/stderr down.

After the ``101`` the socket is a raw pipe. Without ``-i`` the CLI half-closes it at once (the
daemon reads EOF as "no stdin"); with ``-i`` a thread copies our stdin and half-closes at EOF.
Output is raw for a tty container and stdcopy frames otherwise.
"""

from __future__ import annotations

import os
import sys
import threading

from berth.client import stdcopy

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _write(fd_stream: Any) -> Any:
    def write(data: bytes) -> None:
        fd_stream.write(data)
        fd_stream.flush()
    return write


def _pump_stdin(conn: Any) -> None:
    try:
        while True:
            data = os.read(0, 65536)
            if not data:
                break
            conn.send(data)
    except OSError:
        pass
    finally:
        conn.close_write()


def start_stdin(conn: Any, with_stdin: bool) -> None:
    """Begin forwarding stdin (or half-close right away when there is none to send)."""
    if not with_stdin:
        conn.close_write()
        return
    threading.Thread(target=_pump_stdin, args=(conn,), daemon=True).start()


def copy_output(conn: Any, tty: bool) -> None:
    """Copy the container's output to our stdout/stderr until the daemon closes the stream."""
    out = _write(sys.stdout.buffer)
    err = _write(sys.stderr.buffer)
    sys.stdout.flush()
    try:
        if tty:
            while True:
                data = conn.recv()
                if not data:
                    break
                out(data)
        else:
            stdcopy.copy(conn.recv, out, err)
    except (ConnectionError, OSError):
        pass
    finally:
        conn.close()
