"""Pumping an attached container or exec stream: stdin up, stdout/stderr down.

After the ``101`` the socket is a raw pipe. Without ``-i`` the CLI half-closes it at once (the
daemon reads EOF as "no stdin"); with ``-i`` a thread copies our stdin and half-closes at EOF.
Output is raw for a tty container and stdcopy frames otherwise.

With a tty on our side too (``-it``) our terminal goes raw, the detach keys (default Ctrl-P
Ctrl-Q) are caught here and never forwarded (as the docker CLI does), and the terminal size is
sent on start and on every SIGWINCH.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import termios
import threading
import tty as ttymod

from berth.schema import detachkeys, stdcopy

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def _write(fd_stream: Any) -> Any:
    def write(data: bytes) -> None:
        fd_stream.write(data)
        fd_stream.flush()
    return write


class Session:
    """One attached stream: ``start`` the stdin side, ``copy_output`` until it ends."""

    def __init__(self, conn: Any, tty: bool, detach_keys: str = "") -> None:
        self.conn = conn
        self.tty = tty
        self.detached = False
        self.keys = b""
        if tty:
            self.keys = detachkeys.parse(detach_keys or _config_detach_keys() or detachkeys.DEFAULT)
        self._saved: Any = None

    def start(self, with_stdin: bool) -> None:
        if not with_stdin:
            self.conn.close_write()
            return
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        matcher = detachkeys.Matcher(self.keys)
        try:
            while True:
                data = os.read(0, 65536)
                if not data:
                    break
                data, hit = matcher.feed(data)
                if data:
                    self.conn.send(data)
                if hit:
                    self.detached = True
                    _shutdown(self.conn)
                    return
        except OSError:
            pass
        self.conn.close_write()

    def copy_output(self) -> None:
        out = _write(sys.stdout.buffer)
        err = _write(sys.stderr.buffer)
        sys.stdout.flush()
        try:
            if self.tty:
                while True:
                    data = self.conn.recv()
                    if not data:
                        break
                    out(data)
            else:
                stdcopy.copy(self.conn.recv, out, err)
        except (ConnectionError, OSError, ValueError):
            pass
        finally:
            self.conn.close()

    # -- our terminal ---------------------------------------------------------------------------

    def raw(self) -> None:
        """Put our stdin terminal in raw mode (restored by ``restore``)."""
        if not self.tty or not os.isatty(0):
            return
        try:
            self._saved = termios.tcgetattr(0)
            ttymod.setraw(0, termios.TCSANOW)
        except termios.error:
            self._saved = None

    def restore(self) -> None:
        if self._saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, self._saved)
            self._saved = None


def attach(client: Any, cid: str, streams: list[str], tty: bool, detach_keys: str) -> tuple[Any, Session]:
    """Hijack ``POST /containers/{cid}/attach`` for ``streams`` (stdin, stdout, stderr); the
    returned session is not started yet."""
    params: dict[str, object] = {"stream": True, **{s: True for s in streams}}
    if detach_keys:
        params["detachKeys"] = detach_keys
    conn = client.hijack(f"/containers/{cid}/attach", params)
    return conn, Session(conn, tty, detach_keys)


def _shutdown(conn: Any) -> None:
    try:
        conn.sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _config_detach_keys() -> str:
    """``detachKeys`` from the CLI config (~/.berth/config.json, then ~/.docker/config.json)."""
    for d in (os.environ.get("BERTH_CONFIG"), os.path.expanduser("~/.berth"),
              os.environ.get("DOCKER_CONFIG"), os.path.expanduser("~/.docker")):
        if not d:
            continue
        try:
            with open(os.path.join(d, "config.json"), encoding="utf-8") as f:
                keys = json.load(f).get("detachKeys")
        except (OSError, ValueError, AttributeError):
            continue
        if keys:
            return str(keys)
    return ""


def terminal_size() -> tuple[int, int] | None:
    if not os.isatty(1):
        return None
    try:
        size = os.get_terminal_size(1)
    except OSError:
        return None
    return size.lines, size.columns


def monitor_size(resize: Callable[[int, int], None]) -> None:
    """Send our size now and on every SIGWINCH."""

    def send(*_: object) -> None:
        size = terminal_size()
        if size:
            try:
                resize(*size)
            except Exception:
                pass
    send()
    try:
        signal.signal(signal.SIGWINCH, send)
    except ValueError:
        pass


def proxy_signals(kill: Callable[[str], None]) -> None:
    """--sig-proxy: forward the signals we get to the container (not SIGCHLD, SIGWINCH...)."""

    def forward(signo: int, _frame: object) -> None:
        try:
            kill(str(signo))
        except Exception:
            pass
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
        try:
            signal.signal(s, forward)
        except ValueError:
            pass


# -- the older function API (kept for callers) ---------------------------------------------------

def start_stdin(conn: Any, with_stdin: bool) -> None:
    Session(conn, False).start(with_stdin)


def copy_output(conn: Any, tty: bool) -> None:
    s = Session(conn, tty)
    s.copy_output()
