"""One container seen from its shim: setup, its control requests, reaping, the exit record.

``Shim`` creates the container (through the setup helper), then is driven by the shim host's
poll loop (``host``) until the init has exited and its output is drained: it takes the ready
fds that are its own to the stdio (``stdio``) and exec (``exec``) parts, answers the control
socket's requests (``protocol``), is told of its reaped children, and finally records the
exit status atomically in ``exit.json`` and closes everything it held.
"""

from __future__ import annotations

import os
import select
import socket
import sys
import time
from typing import TYPE_CHECKING

import msgspec

from berth import runtime
from berth.linux import prctl
from berth.oci.spec import decode_spec
from berth.runtime.shim import helper, protocol
from berth.runtime.shim.exec import Execs
from berth.runtime.shim.protocol import ExitStatus, Reply, SpawnRequest, StateReply
from berth.runtime.shim.stdio import Client, ContainerIO, Hub, now
from berth.state.atomic import write_atomic

if TYPE_CHECKING:  # imported lazily at run time: the shim's start-up and memory are per container
    from berth.oci.spec import Spec


_DRAIN = 0.2  # seconds the init's output pipes stay open after its exit with nothing on them


def _hung_up(sock: socket.socket) -> bool:
    """Whether the peer closed ``sock`` (EOF is all that is left to read)."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def _warn(text: str) -> None:
    """A line in shim.log, if the disk takes it."""
    try:
        os.write(2, f"berth-shim: {text}\n".encode())
    except OSError:
        pass


class _Closed:
    """Stands in for the fork server connection once it is closed."""

    @staticmethod
    def fileno() -> int:
        return -1


class Shim:
    def __init__(self, req: SpawnRequest, status_sock: socket.socket, poll: select.poll | None = None):
        self.req = req
        self.status_sock: socket.socket | _Closed = status_sock
        self.hub = Hub(poll)
        self.io = ContainerIO(self.hub, req)
        self.execs = Execs(self.hub, req)
        self.setup_helper = helper.Setup(req)
        self.init_pid = 0
        self.start_sent = False
        self.spawn_buf = b""  # what berthd sent on the spawn connection, up to a newline
        self.spec: Spec | None = None
        self.exit: ExitStatus | None = None
        self.drain_deadline = 0.0  # after exit: when to stop waiting for the init's output
        self.started = False

    # -- setup ------------------------------------------------------------------------------

    def setup(self) -> None:
        """Create the container through a short-lived helper child (``helper.Setup``); the
        init is reparented to the shim, a child subreaper, and reaped here."""
        prctl.set_child_subreaper()
        self.io.log.open()
        child = self.io.make_pipes()
        con_parent, con_child = socket.socketpair() if self.req.tty else (None, None)
        self.setup_helper.spawn(*child, con_child)
        self.init_pid = self.setup_helper.init_pid
        if con_parent is not None:
            self.io.adopt_master(helper.recv_master(con_parent))
        self.io.register()
        self.hub.listen(self.req.socket)

    def _spec(self) -> Spec:
        if self.spec is None:
            with open(os.path.join(self.req.bundle, "config.json"), "rb") as f:
                self.spec = decode_spec(f.read())
        return self.spec

    # -- the loop's side: the host's poll loop drives each of its containers' Shims ------------

    def owns(self, fd: int) -> bool:
        return (fd == self.status_sock.fileno() or fd in self.io.pipes or self.execs.owns(fd)
                or fd in self.hub.clients or self.hub.listener is not None and fd == self.hub.listener.fileno())

    @property
    def done(self) -> bool:
        """The init has exited and its output is drained: time to ``finish``."""
        return self.exit is not None and not self.io.pipes

    def timeout(self) -> int | None:
        """How long (ms) this container lets the host's poll wait; None: no limit."""
        timeout = None
        if self.exit is not None:  # after exit, don't wait forever on leaked pipe holders
            timeout = max(0, int((self.drain_deadline - time.monotonic()) * 1000) + 1)
        if self.execs.by_pid:
            timeout = self.execs.timeout(timeout)
        return timeout

    def tick(self) -> None:
        """After each poll: end what waited past its deadline (exited execs' streams, and the
        init's output pipes 200 ms after its exit with nothing more on them)."""
        if self.execs.by_pid:
            self.execs.deadlines()
        if self.exit is not None and self.io.pipes and time.monotonic() >= self.drain_deadline:
            self.io.close_pipes()

    def ready(self, fd: int, ev: int) -> None:
        if self.exit is not None:
            self.drain_deadline = time.monotonic() + _DRAIN
        if fd == self.status_sock.fileno():
            self._spawner_ready()
        elif fd in self.io.pipes:
            self.io.pipe_ready(fd)
        elif self.execs.owns(fd):
            self.execs.ready(fd)
        elif self.hub.listener is not None and fd == self.hub.listener.fileno():
            self.hub.accept()
        elif fd in self.hub.clients:
            self._client_ready(fd, ev)

    def close(self) -> None:
        """Let go of every fd of this container (the host serves others and lives on)."""
        self.hub.close()
        self.io.close()
        self.execs.close_context()
        self.setup_helper.close()
        sock = self.status_sock
        if isinstance(sock, socket.socket):
            try:
                self.hub.poll.unregister(sock.fileno())
            except KeyError:
                pass
            sock.close()
            self.status_sock = _Closed()

    def _spawner_ready(self) -> None:
        """The fork server connection (berthd's end) spoke or hung up. berthd releases the
        init on it with a Start line (sent as soon as it has nothing left to do first, maybe
        before our SpawnReply: then no round trip through berthd delays the start); the
        start's Reply goes back on it."""
        sock = self.status_sock
        assert isinstance(sock, socket.socket)  # polled only while open: _Closed has fd -1
        try:
            data = sock.recv(256)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self.spawn_buf += data
            while b"\n" in self.spawn_buf and isinstance(self.status_sock, socket.socket):
                line, _, self.spawn_buf = self.spawn_buf.partition(b"\n")
                self._spawner_line(sock, line)
            return
        self._spawner_gone(sock)

    def _spawner_gone(self, sock: socket.socket) -> None:
        """berthd hung up: before Start, nobody will ever start this container: abort it."""
        self.hub.poll.unregister(sock.fileno())
        sock.close()
        self.status_sock = _Closed()
        if not self.start_sent and self.exit is None:
            if self.init_pid:
                try:
                    os.kill(self.init_pid, 9)
                except OSError:
                    pass
            self.setup_helper.abort()  # the helper aborts the init it holds

    def _spawner_line(self, sock: socket.socket, line: bytes) -> None:
        try:
            req = protocol.decode_request(line)
        except msgspec.DecodeError:
            return
        if not isinstance(req, protocol.Start):
            return
        if _hung_up(sock):
            # berthd sent Start early, then died before it heard of this container (its
            # restart found no socket to abort): the hang-up after it still aborts.
            self._spawner_gone(sock)
            return
        reply = self._start()
        try:
            sock.sendall(protocol.encode(reply))  # a line into an empty buffer: never blocks
        except OSError:
            return  # berthd is gone: it finds the container again at its restart
        if reply.ok and self.req.attach is not None:
            self._attach_spawner(sock, self.req.attach)

    def _attach_spawner(self, sock: socket.socket, req: protocol.Attach) -> None:
        """The spawn connection becomes the attach stream berthd asked for in the request
        (``docker run`` attached before the start): subscribed here, before this loop reads
        the init's first output, and what followed the Start line is stdin."""
        self.hub.poll.unregister(sock.fileno())
        self.status_sock = _Closed()
        rest, self.spawn_buf = self.spawn_buf, b""
        self.io.attach(self.hub.adopt(sock), req, rest, reply=False)

    def reaped(self, pid: int, status: int) -> bool:
        """A child of the host exited: True when it was one of this container's."""
        if self.io.log.reaped(pid):
            return True
        if pid == self.init_pid and self.init_pid:
            if self.exit is None:
                code = os.waitstatus_to_exitcode(status)
                self._exited(128 - code if code < 0 else code)
        elif pid == self.setup_helper.pid and self.setup_helper.pid:
            if not self.start_sent and self.exit is None:
                # The helper left before "start": it aborted (and reaped) the init.
                self._exited(137, "container aborted before start")
        elif pid in self.execs.by_pid:
            code = os.waitstatus_to_exitcode(status)
            self.execs.exited(self.execs.by_pid[pid], 128 - code if code < 0 else code)
        else:
            return False
        return True

    def _reap_init(self) -> None:
        """Reap the init now if it is already gone (its code beats the exec error's)."""
        try:
            pid, status = os.waitpid(self.init_pid, os.WNOHANG)
        except ChildProcessError:
            return
        if pid:
            self.reaped(pid, status)

    def _exited(self, code: int, error: str = "") -> None:
        self.execs.close_context()
        oom = False
        try:
            oom = bool(runtime.oom_killed(self._spec()))
        except Exception:
            pass
        self.exit = ExitStatus(exit_code=code, oom_killed=oom, finished_at=now(), error=error)
        self.drain_deadline = time.monotonic() + _DRAIN

    def finish(self) -> None:
        """Init has exited and its output is drained: record, tell waiters, then remove the
        cgroup and the socket. berthd hears of the exit first (the 9 rmdirs of a v1 cgroup
        are not on the wait's path); the waiters' connections stay open until the cgroup is
        gone (the host's ``close``), and berthd starts this container again only after that
        EOF (or once the socket is gone), so a new start's cgroup never meets these rmdirs.
        A shim that dies in between leaves the empty cgroup, which berthd removes when it
        sees the EOF (``Monitor``)."""
        assert self.exit is not None
        try:
            self.io.log.flush()
        except OSError as e:
            _warn(f"flushing the log: {e}")
        line = protocol.encode(self.exit)
        try:
            write_atomic(self.req.exit_file, line, sync=self.req.exit_sync)
        except OSError as e:  # a full disk: berthd still hears of the exit from the waiters' line
            _warn(f"recording the exit in {self.req.exit_file}: {e}")
        self.execs.end_all()
        self.hub.flush_all(line, keep_waiters=True)
        self._delete()
        try:  # last: a berthd that finds no socket (its Wait came late) knows the cgroup gone too
            os.unlink(self.req.socket)
        except FileNotFoundError:
            pass

    def _delete(self) -> None:
        """The container is gone: remove its cgroup (with runc or crun: its state, then the
        rootfs the engine mounted for it)."""
        from berth import runtime
        rt = helper.external(self.req)
        try:
            if rt is None:
                runtime.delete(self._spec())
                return
            from berth.runtime import external
            rt.delete(self.req.id)
            root = self._spec().root
            if root is not None:
                external.release(root.path)
        except Exception as e:
            print(f"berth-shim: {self.req.id}: delete: {e}", file=sys.stderr)

    # -- requests ---------------------------------------------------------------------------

    def _client_ready(self, fd: int, ev: int) -> None:
        c = self.hub.clients[fd]
        data = self.hub.ready(fd, ev)
        if data is None:
            return
        if c.exec is not None:
            self.execs.input(c, data)
        elif c.attached:
            self.io.attached_input(c, data, ev)
        elif not data:
            self.hub.drop(c)
        else:
            self._request(c, data)

    def _request(self, c: Client, data: bytes) -> None:
        c.buf += data
        if b"\n" not in c.buf:
            return
        line, _, rest = c.buf.partition(b"\n")
        c.buf = b""
        try:
            req = protocol.decode_request(line)
        except msgspec.DecodeError:
            self.hub.drop(c)
            return
        self._handle(c, req, rest)

    def _handle(self, c: Client, req: protocol.AnyRequest | str, rest: bytes) -> None:
        if isinstance(req, str):
            self.hub.reply(c, Reply(error=req))
        elif isinstance(req, protocol.Start):
            self.hub.reply(c, self._start())
        elif isinstance(req, protocol.Attach):
            self.io.attach(c, req, rest)
        elif isinstance(req, protocol.Wait):
            c.waiting = True  # answered in finish
        elif isinstance(req, protocol.Kill):
            self.hub.reply(c, self._kill(req.signal))
        elif isinstance(req, protocol.State):
            status = "exited" if self.exit else ("running" if self.started else "created")
            self.hub.reply(c, StateReply(pid=self.init_pid, status=status))
        elif isinstance(req, protocol.Resize):
            self.hub.reply(c, self._resize(req))
        elif isinstance(req, protocol.ReopenLog):
            self.hub.reply(c, self.io.log.reopen_cri())
        elif not self.started or self.exit is not None:  # an Exec
            self.hub.reply(c, protocol.ExecReply(error="container is not running"))
        else:
            self.execs.start(c, req, rest, self.init_pid)

    def _start(self) -> Reply:
        if self.started:
            return Reply(ok=True)
        if not self.setup_helper.waiting:
            return Reply(error="container is not waiting to start")
        self.start_sent = True
        err = self.setup_helper.start()
        if err is not None:
            self._reap_init()
            if self.exit is None:
                self._exited(127 if "not found" in err or "no such file" in err else 126, err)
            else:
                self.exit.error = err
            return Reply(error=err)
        self.started = True
        return Reply(ok=True)

    def _kill(self, signo: int) -> Reply:
        try:
            if self.exit is None and self.init_pid:
                self._signal(signo)
            if not self.started:
                self.setup_helper.abort()  # the helper aborts the init it holds
            return Reply(ok=True)
        except OSError as e:
            return Reply(error=f"kill: {os.strerror(e.errno or 0)}")

    def _signal(self, signo: int) -> None:
        rt = helper.external(self.req) if self.started else None
        if rt is None:
            os.kill(self.init_pid, signo)
            return
        try:
            rt.kill(self.req.id, signo)
        except Exception:  # the runtime no longer knows it (stopped meanwhile): as kill(2)
            os.kill(self.init_pid, signo)

    def _resize(self, req: protocol.Resize) -> Reply:
        fd = self.execs.master(req.exec) if req.exec is not None else self.io.master
        if fd is None:
            return Reply(error="no terminal")
        try:
            helper.resize(fd, req.h, req.w)
        except OSError as e:
            return Reply(error=f"resize: {os.strerror(e.errno or 0)}")
        return Reply(ok=True)
