"""``docker exec`` in the shim: processes started in the running container, each with its own
stdio and its own stream (the connection that asked for it).

The shim forks each process itself, straight into the container (``execproc.spawn_exec``:
one fork, no helper), from an ``ExecContext`` (spec, host facts, seccomp program, cgroup and
namespace fds) made at the first exec and kept until the container exits, and goes back to
its loop: the reply (the pid, or the error) goes out when the process's report pipe says
how its execve went. With runc or crun, a short-lived helper child runs the runtime's
``exec -d`` and replies the pid it left behind. Its output then goes down the stream as stdcopy frames, ending with one
EXIT frame carrying the exit code; then the shim closes the stream.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from berth.runtime import nsexec
from berth.runtime.execproc import ExecContext, exec_failure, spawn_exec, spawn_exec_native
from berth.runtime.shim import helper, protocol
from berth.runtime.shim.protocol import EXIT, STDERR, STDOUT, ExecReply, SpawnRequest, frame
from berth.runtime.shim.stdio import POLLIN, Client, Hub, write_all

if TYPE_CHECKING:  # imported lazily at run time: the shim's start-up and memory are per container
    from berth.runtime.execproc import ExecContext


class ExecSession:
    """A process started by ``docker exec``: its stdio, its stream, its exit."""

    __slots__ = ("id", "pid", "client", "fds", "stdin_w", "master", "code", "deadline", "pending")

    def __init__(self, id: str, client: Client):
        self.id = id
        self.pid = 0
        self.client: Client | None = client
        self.fds: dict[int, int] = {}  # output fd -> stream
        self.stdin_w: int | None = None
        self.master: int | None = None
        self.code: int | None = None
        self.deadline = 0.0  # after exit: stop waiting for output held by leftover children
        self.pending: _Pending | None = None  # forked, execve not reported yet


class _Pending:
    """An exec forked but not replied to: what the reply needs, and the client's early bytes."""

    __slots__ = ("console", "stdin", "early")

    def __init__(self, console: socket.socket | None, stdin: bool, rest: bytes) -> None:
        self.console = console  # receives the pty master (tty)
        self.stdin = stdin
        self.early = [rest] if rest else []


class Execs:
    """The container's exec sessions."""

    def __init__(self, hub: Hub, req: SpawnRequest):
        self.hub = hub
        self.req = req
        self.by_pid: dict[int, ExecSession] = {}
        self.by_fd: dict[int, ExecSession] = {}  # output fd -> its exec
        self.by_report: dict[int, ExecSession] = {}  # report pipe -> its exec, until execve
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

    def owns(self, fd: int) -> bool:
        return fd in self.by_fd or fd in self.by_report

    def ready(self, fd: int) -> None:
        if fd in self.by_report:
            self.reported(fd)
        else:
            self.output(fd)

    def master(self, exec_id: str) -> int | None:
        """The terminal of the exec ``exec_id``, if it has one."""
        e = next((x for x in self.by_pid.values() if x.id == exec_id), None)
        return e.master if e is not None else None

    # -- start ------------------------------------------------------------------------------

    def start(self, c: Client, req: protocol.Exec, rest: bytes, init_pid: int) -> None:
        """Fork the process straight into the container (``spawn_exec``) and return to the
        loop: the reply goes out when its report pipe says how execve went (``reported``).
        With runc or crun (``req.runtime_path``) a helper child runs ``exec -d`` instead
        (``_start_external``): they join the container themselves."""
        ctx = None
        if not self.req.runtime_path:
            try:
                ctx = self._context(init_pid)
            except Exception as ex:
                self.hub.reply(c, ExecReply(error=str(ex) or ex.__class__.__name__, exit_code=126))
                return
        e = ExecSession(req.id, c)
        con_parent, con_child, child, stdio = _stdio(e, req)
        con = con_child.fileno() if con_child else None
        rep_r, rep_w = os.pipe2(os.O_CLOEXEC)
        try:
            if ctx is None:
                pid = _fork_external(self.req, req, stdio, rep_w, (*child, rep_w, con if con is not None else 2), con)
            else:
                pid = _spawn_own(ctx, req, (*child, rep_w), stdio, rep_w, con)
        except OSError as ex:
            pid = 0
            os.close(rep_r)
            self._failed(c, e, con_parent, f"fork exec process: {os.strerror(ex.errno or 0)}")
        finally:
            os.close(rep_w)
            for fd in set(child):
                if con_child is None or fd != con_child.fileno():
                    os.close(fd)
            if con_child is not None:
                con_child.close()
        if not pid:
            return
        e.pending = _Pending(con_parent, req.stdin, rest)
        c.exec = e
        if ctx is None:
            self._start_external(c, e, rep_r)
            return
        e.pid = pid
        self.by_pid[pid] = e
        self.by_report[rep_r] = e
        self.hub.poll.register(rep_r, POLLIN)

    def _start_external(self, c: Client, e: ExecSession, rep_r: int) -> None:
        """runc or crun: wait for the helper's reply (the pid of the process ``exec -d`` left
        behind, reparented to the shim), then reply as for berth's own exec."""
        reply = _helper_reply(rep_r)
        assert e.pending is not None
        p, e.pending = e.pending, None
        if reply.error is not None:
            self._failed(c, e, p.console, reply.error)
            return
        e.pid = reply.pid
        self._attach(c, e, p)

    def reported(self, rep_r: int) -> None:
        """The exec's report pipe is readable: read it to EOF (execve, or the child's exit,
        follows at once), then reply and start streaming, or reply the error."""
        e = self.by_report.pop(rep_r)
        self.hub.poll.unregister(rep_r)
        chunks = []
        with os.fdopen(rep_r, "rb", buffering=0) as f:
            while chunk := f.read(4096):
                chunks.append(chunk)
        assert e.pending is not None and e.client is not None
        p, e.pending = e.pending, None
        con_parent = p.console
        c = e.client
        if chunks:
            self.by_pid.pop(e.pid, None)  # the child exits; the host reaps it
            self._failed(c, e, con_parent, exec_failure(b"".join(chunks)))
            return
        self._attach(c, e, p)

    def _attach(self, c: Client, e: ExecSession, p: _Pending) -> None:
        if p.console is not None:
            e.master = helper.recv_master(p.console)
            e.fds = {e.master: STDOUT}
            if p.stdin:
                e.stdin_w = os.dup(e.master)
        self._started(c, e)
        for data in p.early:
            self.input(c, data)

    def _failed(self, c: Client, e: ExecSession, con_parent: socket.socket | None, error: str) -> None:
        for fd in list(e.fds) + ([e.stdin_w] if e.stdin_w is not None else []):
            os.close(fd)
        e.fds, e.stdin_w = {}, None
        if con_parent is not None:
            con_parent.close()
        c.exec = None
        e.client = None
        self.hub.reply(c, ExecReply(error=error, exit_code=126))

    def _started(self, c: Client, e: ExecSession) -> None:
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
        if e.pending is not None:  # not replied to yet: kept for when it is
            e.pending.early.append(data)
            return
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
        if not e.fds and e.pending is None:
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
        for fd in list(self.by_report):  # each report ends at once: execve or exit
            self.reported(fd)
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
            if e.code is not None and e.deadline <= now and e.pending is None:
                self._done(e)



def _stdio(e: ExecSession, req: protocol.Exec) -> tuple[socket.socket | None, socket.socket | None, list[int],
                                                      tuple[int, int, int]]:
    """The exec's stdio: (console parent, console child, the child's fds, its stdin/out/err).
    The shim's ends go in ``e`` (output fds, stdin)."""
    con_parent = con_child = None
    if req.tty:
        con_parent, con_child = socket.socketpair()
        in_r = out_w = err_w = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
        return con_parent, con_child, [in_r, con_child.fileno()], (in_r, out_w, err_w)
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    if req.stdin:
        in_r, e.stdin_w = os.pipe2(os.O_CLOEXEC)
    else:
        in_r = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    e.fds = {out_r: STDOUT, err_r: STDERR}
    return None, None, [in_r, out_w, err_w], (in_r, out_w, err_w)


def _spawn_own(ctx: ExecContext, req: protocol.Exec, keep: tuple[int, ...], stdio: tuple[int, int, int],
               rep_w: int, con: int | None) -> int:
    """Start the process with berth's own runtime: berth-nsexec (C, vfork) when it is built,
    planned here; else, or when planning fails (the Python child then reports the error in
    its words), a Python child forked straight into the container (``spawn_exec``)."""
    if nsexec.binary() is not None:
        try:
            plan = ctx.exec_plan(args=list(req.args), env=list(req.env), cwd=req.cwd, user=req.user, tty=req.tty,
                                 privileged=req.privileged)
            pid = spawn_exec_native(ctx, plan, stdio=stdio, report=rep_w, console_socket=con)
            if pid is not None:
                return pid
        except Exception:  # noqa: BLE001 - the Python path plans again and reports it
            pass
    keep = (*keep, *ctx.fds())
    return spawn_exec(ctx, lambda: helper.exec_plan(ctx, req, keep), stdio=stdio, report=rep_w, console_socket=con)


def _fork_external(spawn: SpawnRequest, req: protocol.Exec, stdio: tuple[int, int, int], rep_w: int,
                   keep: tuple[int, ...], con: int | None) -> int:
    """Fork the helper that runs the external runtime's ``exec -d`` (helper.external_exec_child)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        helper.close_all_but(0, 1, 2, *keep)
        helper.external_exec_child(spawn, req, *stdio, rep_w, con)
    return pid


def _helper_reply(rep_r: int) -> ExecReply:
    with os.fdopen(rep_r, "rb") as f:
        line = f.readline()
    try:
        return protocol.decode(line, ExecReply)
    except msgspec.DecodeError:
        return ExecReply(error="exec helper exited", exit_code=126)
