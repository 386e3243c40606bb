"""The shim host: one shim process serving a bounded group of containers.

A forked CPython dirties ~0.8 MiB of copy-on-write pages by merely running, and a shim that
creates and serves one container ~2.1 MiB (docs/performance.md, "Shim memory"), while each
further container served by the same process adds ~0.1 MiB. So the fork server forks a host
for the first container of a group and hands it the next ones (``forkserver``), up to the
group's size; a crash of the host ends the shims of its group only. Each container keeps all
of its own: a ``Shim`` with its control socket, stdio, log, execs and exit record, so berthd
sees no difference (live restore finds each container's socket as before).

    fork server --fork--> host(first request)        one poll loop, one SIGCHLD wake-up
    fork server --join--> host: a SpawnRequest line and berthd's connection (SCM_RIGHTS),
                          answered with b"+" once taken; the host then creates the container
    fork server closes the join socket when the group is full; the host exits when its last
    container has exited (a request it never took is retried by the fork server elsewhere)
"""

from __future__ import annotations

import os
import select
import signal
import socket

import msgspec

from berth.runtime.shim import protocol
from berth.runtime.shim.loop import Shim
from berth.runtime.shim.protocol import SpawnReply, SpawnRequest
from berth.runtime.shim.stdio import POLLIN

TAKEN = b"+"  # the host's answer on the join socket: the request is ours now


class Host:
    """The poll loop shared by the Shims of one group, and the join socket that brings more."""

    def __init__(self, join: socket.socket | None):
        self.poll = select.poll()
        self.shims: list[Shim] = []
        self.join = join
        if join is not None:
            self.poll.register(join.fileno(), POLLIN)

    def add(self, req: SpawnRequest, conn: socket.socket) -> None:
        """Create a container and serve it; its setup error goes to berthd on ``conn``."""
        shim = Shim(req, conn, self.poll)
        try:
            shim.setup()
        except Exception as e:  # setup failure: report, leave no socket behind
            _reply(conn, SpawnReply(error=str(e) or e.__class__.__name__))
            shim.close()
            return
        _reply(conn, SpawnReply(pid=shim.init_pid, shim_pid=os.getpid()))
        # berthd keeps this connection open until it has sent "start": if it dies before
        # that (the connection hangs up), nobody will ever start this container: abort it.
        conn.setblocking(False)
        self.poll.register(conn.fileno(), POLLIN)
        self.shims.append(shim)

    def run(self) -> None:
        """Serve until the last container has exited."""
        sig_r, sig_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        signal.set_wakeup_fd(sig_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        self.poll.register(sig_r, POLLIN)
        self._reap()
        while True:
            for shim in [s for s in self.shims if s.done]:
                shim.finish()
                shim.close()
                self.shims.remove(shim)
            if not self.shims:
                return
            timeouts = [t for t in (s.timeout() for s in self.shims) if t is not None]
            for fd, ev in self.poll.poll(min(timeouts) if timeouts else None):
                if fd == sig_r:
                    try:
                        os.read(sig_r, 512)
                    except BlockingIOError:
                        pass
                    self._reap()
                elif self.join is not None and fd == self.join.fileno():
                    self._joined()
                else:
                    self._ready(fd, ev)
            for shim in self.shims:
                shim.tick()

    def _ready(self, fd: int, ev: int) -> None:
        for shim in self.shims:
            if shim.owns(fd):
                shim.ready(fd, ev)
                return

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            for shim in self.shims:
                if shim.reaped(pid, status):
                    break

    def _joined(self) -> None:
        """The fork server hands over a container (or, with EOF, says the group is full)."""
        assert self.join is not None
        try:
            line, fds, _, _ = socket.recv_fds(self.join, 1 << 16, 1)
        except OSError:
            line, fds = b"", []
        if not line or not fds:
            for fd in fds:
                os.close(fd)
            self.poll.unregister(self.join.fileno())
            self.join.close()
            self.join = None
            return
        os.set_inheritable(fds[0], False)
        conn = socket.socket(fileno=fds[0])
        try:
            req = protocol.decode(line, SpawnRequest)
        except msgspec.DecodeError as e:
            conn.sendall(protocol.encode(SpawnReply(error=f"bad spawn request: {e}")))
            conn.close()
            self.join.send(TAKEN)
            return
        self.join.send(TAKEN)
        self.add(req, conn)


def _reply(conn: socket.socket, reply: SpawnReply) -> None:
    """Answer berthd; if it died meanwhile, the hang-up aborts the container (not the host:
    the group's other containers run on)."""
    try:
        conn.sendall(protocol.encode(reply))
    except OSError:
        pass
