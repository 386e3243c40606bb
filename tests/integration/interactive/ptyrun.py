"""Drive a command under a real pseudo-terminal, as a person at a keyboard would."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import termios
import time


class PtyProcess:
    def __init__(self, argv: list[str], env: dict[str, str] | None = None, rows: int = 24, cols: int = 80):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: exec the command on the pty
            try:
                os.execvpe(argv[0], argv, env or dict(os.environ))
            finally:
                os._exit(127)
        self.resize(rows, cols)
        self.buf = b""
        self.status: int | None = None

    def resize(self, rows: int, cols: int) -> None:
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGWINCH)
            except ProcessLookupError:
                pass

    def write(self, data: bytes | str) -> None:
        os.write(self.fd, data.encode() if isinstance(data, str) else data)

    def _read(self, timeout: float) -> bool:
        r, _, _ = select.select([self.fd], [], [], timeout)
        if not r:
            return True
        try:
            data = os.read(self.fd, 65536)
        except OSError:
            data = b""
        if not data:
            return False
        self.buf += data
        return True

    def expect(self, needle: bytes | str, timeout: float = 10) -> bytes:
        """Read until ``needle`` appears; returns everything up to and including it."""
        n = needle.encode() if isinstance(needle, str) else needle
        end = time.monotonic() + timeout
        while n not in self.buf:
            left = end - time.monotonic()
            if left <= 0 or not self._read(min(left, 0.5)) and n not in self.buf:
                if left <= 0:
                    raise TimeoutError(f"{n!r} not seen; got {self.buf[-500:]!r}")
                if n not in self.buf:
                    raise EOFError(f"{n!r} not seen before EOF; got {self.buf[-500:]!r}")
        i = self.buf.index(n) + len(n)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def wait(self, timeout: float = 20) -> int:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self._read(0.05)
            pid, st = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(st)
                self._drain()
                return self.status
        raise TimeoutError(f"still running; output {self.buf[-500:]!r}")

    def _drain(self) -> None:
        while True:
            r, _, _ = select.select([self.fd], [], [], 0.05)
            if not r:
                return
            try:
                data = os.read(self.fd, 65536)
            except OSError:
                return
            if not data:
                return
            self.buf += data

    def close(self) -> None:
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        try:
            os.close(self.fd)
        except OSError:
            pass
