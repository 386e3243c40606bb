"""Forked test children for the cgroup integration tests.

Each child blocks until the parent has put it into the cgroup (`go()`), then runs a body and
reports one line back through a pipe. The child never returns into pytest: it always _exit()s.
"""

from __future__ import annotations

import mmap
import os
import secrets
import signal
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from berth.runtime.cgroups import Cgroup, Layout, open_cgroup

root_only = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs uid 0"),
]


class Child:
    def __init__(self, body: Callable[[Child], str]) -> None:
        self._go_r, self._go_w = os.pipe()
        self._out_r, self._out_w = os.pipe()
        self.counter = mmap.mmap(-1, 8)  # shared with the child: a progress counter
        pid = os.fork()
        if pid == 0:  # child
            code = 0
            try:
                os.close(self._go_w)
                os.close(self._out_r)
                os.read(self._go_r, 1)
                msg = body(self)
                os.write(self._out_w, (msg + "\n").encode())
            except BaseException as e:  # noqa: BLE001 -- report anything, never return to pytest
                try:
                    os.write(self._out_w, f"error {e!r}\n".encode())
                except OSError:
                    pass
                code = 1
            finally:
                os._exit(code)
        self.pid = pid
        os.close(self._go_r)
        os.close(self._out_w)
        self.status: int | None = None

    def go(self) -> None:
        os.write(self._go_w, b"g")
        os.close(self._go_w)

    def result(self, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        buf = b""
        os.set_blocking(self._out_r, False)
        while b"\n" not in buf and time.monotonic() < deadline:
            try:
                chunk = os.read(self._out_r, 4096)
            except BlockingIOError:
                time.sleep(0.005)
                continue
            if not chunk:
                break
            buf += chunk
        return buf.decode().strip()

    def count(self) -> int:
        return struct.unpack("Q", self.counter[:8])[0]

    def wait(self, timeout: float = 20.0) -> int:
        deadline = time.monotonic() + timeout
        while self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = status
                break
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                _, self.status = os.waitpid(self.pid, 0)
                raise TimeoutError(f"child {self.pid} did not exit")
            time.sleep(0.005)
        return self.status

    def cleanup(self) -> None:
        for fd in (self._go_w, self._out_r):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.wait(5)
            except ChildProcessError:
                pass


def spin(child: Child) -> str:
    """A body that counts forever (until killed)."""
    n = 0
    while True:
        n += 1
        child.counter[:8] = struct.pack("Q", n)


@contextmanager
def scratch_cgroup(layout: Layout, resources: object = None) -> Iterator[Cgroup]:
    """A cgroup at /berth-test-<random>/c, removed (with its parent) afterwards."""
    top = f"/berth-test-{secrets.token_hex(6)}"
    cg = open_cgroup(f"{top}/c", layout)
    parent = open_cgroup(top, layout)
    try:
        cg.create(resources)
        yield cg
    finally:
        try:
            if cg.pids():
                cg.kill_all(signal.SIGKILL)
        finally:
            cg.destroy()
            parent.destroy()
            for p in parent.paths().values():
                assert not Path(p).exists(), p
