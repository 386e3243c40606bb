"""``berth system dial-stdio``: a byte pipe between this process's stdio and the daemon socket.

The docker CLI reaches an ``ssh://`` host by running ``docker system dial-stdio`` there and
speaking HTTP over the ssh channel; this is the far end of that pipe. Like docker's: stdin's end
half-closes the socket (the daemon still answers), and the daemon's end of output ends the
pipe at once (stdin may never close).
"""

from __future__ import annotations

import os
import socket
import threading

from berth.client._http import Connection

_CHUNK = 65536


def _stdin_to_socket(sock: socket.socket, stdin: int) -> None:
    try:
        while data := os.read(stdin, _CHUNK):
            sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def _socket_to_stdout(sock: socket.socket, stdout: int) -> None:
    while data := sock.recv(_CHUNK):
        view = memoryview(data)
        while view:
            view = view[os.write(stdout, view):]


def dial_stdio(host: str, stdin: int = 0, stdout: int = 1) -> None:
    """Bridge ``stdin``/``stdout`` with the daemon at ``host`` until the daemon's side ends.

    Raises:
        ConnectError: the daemon socket could not be reached.
    """
    conn = Connection(host)
    sock = conn.sock
    sock.settimeout(None)
    threading.Thread(target=_stdin_to_socket, args=(sock, stdin), daemon=True).start()
    try:
        _socket_to_stdout(sock, stdout)
    finally:
        conn.close()
