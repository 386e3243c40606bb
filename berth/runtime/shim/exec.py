"""``docker exec`` in the shim: processes started in the running container, each with its own
stdio and its own stream (the connection that asked for it).

The process is started by a short-lived exec helper child (``helper.exec_child``) from an
``ExecContext`` (spec, host facts, seccomp program, cgroup and namespace fds) made at the
first exec and kept until the container exits. Its output goes down the stream as stdcopy
frames, ending with one EXIT frame carrying the exit code; then the shim closes the stream.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from berth.runtime.container_exec import ExecContext
from berth.runtime.shim import helper, protocol
from berth.runtime.shim.protocol import EXIT, STDERR, STDOUT, ExecReply, SpawnRequest, frame
from berth.runtime.shim.stdio import POLLIN, Client, Hub, write_all

if TYPE_CHECKING:  # imported lazily at run time: the shim's start-up and memory are per container
    from berth.runtime.container_exec import ExecContext


class ExecSession:
    """A process started by ``docker exec``: its stdio, its stream, its exit."""

    __slots__ = ("id", "pid", "client", "fds", "stdin_w", "master", "code", "deadline")

    def __init__(self, id: str, client: Client):
        self.id = id
        self.pid = 0
        self.client: Client | None = client
        self.fds: dict[int, int] = {}  # output fd -> stream
        self.stdin_w: int | None = None
        self.master: int | None = None
        self.code: int | None = None
        self.deadline = 0.0  # after exit: stop waiting for output held by leftover children


class Execs:
    """The container's exec sessions."""

    def __init__(self, hub: Hub, req: SpawnRequest):
        self.hub = hub
        self.req = req
        self.by_pid: dict[int, ExecSession] = {}
        self.by_fd: dict[int, ExecSession] = {}  # output fd -> its exec
        self.ctx: ExecContext | None = None  # made at the first exec

    def _context(self, init_pid: int) -> ExecContext:
        if self.ctx is None:
            cache = self.req.seccomp_cache
            with open(os.path.join(self.req.bundle, "config.json"), "rb") as f:
                raw = f.read()
            self.ctx = ExecContext.prepare(raw, init_pid, Path(cache) if cache else None)
        return self.ctx

    def close_context(self) -> None:
        """The container exited: let go of its namespaces."""
        if self.ctx is not None:
            self.ctx.close()
            self.ctx = None

    def master(self, exec_id: str) -> int | None:
        """The terminal of the exec ``exec_id``, if it has one."""
        e = next((x for x in self.by_pid.values() if x.id == exec_id), None)
        return e.master if e is not None else None

    # -- start ------------------------------------------------------------------------------

    def start(self, c: Client, req: protocol.Exec, rest: bytes, init_pid: int) -> None:
        """Start a process in the container through a short-lived helper child (as setup)."""
        ctx = None
        if not self.req.runtime_path:  # runc and crun join the container themselves
            try:
                ctx = self._context(init_pid)
            except Exception as ex:
                self.hub.reply(c, ExecReply(error=str(ex) or ex.__class__.__name__, exit_code=126))
                return
        e = ExecSession(req.id, c)
        con_parent = con_child = None
        if req.tty:
            con_parent, con_child = socket.socketpair()
            in_r = out_w = err_w = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
            child = [in_r, con_child.fileno()]
        else:
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            if req.stdin:
                in_r, e.stdin_w = os.pipe2(os.O_CLOEXEC)
            else:
                in_r = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
            e.fds = {out_r: STDOUT, err_r: STDERR}
            child = [in_r, out_w, err_w]
        rep_r, rep_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:
            con = con_child.fileno() if con_child else None
            helper.close_all_but(0, 1, 2, rep_w, *child, *(ctx.fds() if ctx else ()), con if con is not None else 2)
            if ctx is None:
                helper.external_exec_child(self.req, req, in_r, out_w, err_w, rep_w, con)
            else:
                helper.exec_child(ctx, req, in_r, out_w, err_w, rep_w, con)
        os.close(rep_w)
        for fd in set(child):
            if con_child is None or fd != con_child.fileno():
                os.close(fd)
        if con_child is not None:
            con_child.close()
        reply = _helper_reply(rep_r)
        if reply.error is not None:
            for fd in list(e.fds) + ([e.stdin_w] if e.stdin_w is not None else []):
                os.close(fd)
            if con_parent is not None:
                con_parent.close()
            self.hub.reply(c, reply)
            return
        if con_parent is not None:
            e.master = helper.recv_master(con_parent)
            e.fds = {e.master: STDOUT}
            if req.stdin:
                e.stdin_w = os.dup(e.master)
        self._started(c, e, reply.pid)
        if rest:
            self.input(c, rest)

    def _started(self, c: Client, e: ExecSession, pid: int) -> None:
        e.pid = pid
        c.exec = e
        c.attached = True
        self.by_pid[e.pid] = e
        for fd in e.fds:
            os.set_blocking(fd, False)
            self.by_fd[fd] = e
            self.hub.poll.register(fd, POLLIN)
        self.hub.reply(c, ExecReply(pid=e.pid))

    # -- the stream -------------------------------------------------------------------------

    def input(self, c: Client, data: bytes) -> None:
        e = c.exec
        assert isinstance(e, ExecSession)
        if data:
            if e.stdin_w is not None and not write_all(e.stdin_w, data):
                self._close_stdin(e)
            return
        # the client half-closed (no more stdin) or left: the process keeps running
        self.hub.stop_reading(c)
        if e.master is None:
            self._close_stdin(e)

    def _close_stdin(self, e: ExecSession) -> None:
        if e.stdin_w is not None:
            os.close(e.stdin_w)
            e.stdin_w = None

    def output(self, fd: int) -> None:
        e = self.by_fd[fd]
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close_fd(e, fd)
            return
        if e.client is not None and self.hub.connected(e.client):
            self.hub.send(e.client, frame(e.fds[fd], data))

    def _close_fd(self, e: ExecSession, fd: int) -> None:
        self.hub.poll.unregister(fd)
        os.close(fd)
        del e.fds[fd]
        del self.by_fd[fd]
        if e.master == fd:
            e.master = None
        if not e.fds and e.code is not None:
            self._done(e)

    # -- exit -------------------------------------------------------------------------------

    def exited(self, e: ExecSession, code: int) -> None:
        if e.code is None:
            e.code = code
            e.deadline = time.monotonic() + 0.2
        if not e.fds:
            self._done(e)

    def _done(self, e: ExecSession) -> None:
        for fd in list(e.fds):
            self._close_fd(e, fd)
        self._close_stdin(e)
        self.by_pid.pop(e.pid, None)
        c, e.client = e.client, None
        if c is not None and self.hub.connected(c):
            self.hub.send_and_close(c, frame(EXIT, protocol.encode(protocol.ExecExit(exit_code=e.code))))

    def end_all(self) -> None:
        """The container is gone: end every stream (137 for a process not reaped yet)."""
        for e in list(self.by_pid.values()):
            self.exited(e, e.code if e.code is not None else 137)
            self._done(e)

    def timeout(self, timeout: int | None) -> int | None:
        """The poll timeout (ms) that wakes the loop at the first exited exec's deadline."""
        deadlines = [e.deadline for e in self.by_pid.values() if e.code is not None]
        if not deadlines:
            return timeout
        ms = max(0, int((min(deadlines) - time.monotonic()) * 1000) + 1)
        return ms if timeout is None else min(ms, timeout)

    def deadlines(self) -> None:
        """End the streams of exited execs whose output is still held by leftover children."""
        now = time.monotonic()
        for e in list(self.by_pid.values()):
            if e.code is not None and e.deadline <= now:
                self._done(e)


def _helper_reply(rep_r: int) -> ExecReply:
    with os.fdopen(rep_r, "rb") as f:
        line = f.readline()
    try:
        return protocol.decode(line, ExecReply)
    except msgspec.DecodeError:
        return ExecReply(error="exec helper exited", exit_code=126)
