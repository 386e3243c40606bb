"""The shim's poll loop and its control requests: the container's life seen from its shim.

``Shim`` creates the container (through the setup helper), then loops until the init has
exited and its output is drained: it reaps children, routes ready fds to the stdio
(``stdio``) and exec (``exec``) parts, answers the control socket's requests
(``protocol``), and finally records the exit status atomically in ``exit.json``.
"""

from __future__ import annotations

import os
import signal
import socket
from typing import TYPE_CHECKING

import msgspec

from berth.runtime.shim import helper, protocol
from berth.runtime.shim.exec import Execs
from berth.runtime.shim.protocol import ExitStatus, Reply, SpawnRequest, StateReply
from berth.runtime.shim.stdio import POLLIN, Client, ContainerIO, Hub, now
from berth.state.atomic import write_atomic

if TYPE_CHECKING:  # imported lazily at run time: the shim's start-up and memory are per container
    from berth.oci.spec import Spec


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
    def __init__(self, req: SpawnRequest, status_sock: socket.socket):
        self.req = req
        self.status_sock: socket.socket | _Closed = status_sock
        self.hub = Hub()
        self.io = ContainerIO(self.hub, req)
        self.execs = Execs(self.hub, req)
        self.setup_helper = helper.Setup(req)
        self.init_pid = 0
        self.start_sent = False
        self.spec: Spec | None = None
        self.exit: ExitStatus | None = None
        self.started = False

    # -- setup ------------------------------------------------------------------------------

    def setup(self) -> None:
        """Create the container through a short-lived helper child (``helper.Setup``); the
        init is reparented to the shim, a child subreaper, and reaped here."""
        from berth.linux import prctl
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
            from berth.oci.spec import decode_spec
            with open(os.path.join(self.req.bundle, "config.json"), "rb") as f:
                self.spec = decode_spec(f.read())
        return self.spec

    # -- loop -------------------------------------------------------------------------------

    def run(self) -> None:
        sig_r, sig_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        signal.set_wakeup_fd(sig_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        self.hub.poll.register(sig_r, POLLIN)
        self._reap()
        while True:
            if self.exit is not None and not self.io.pipes:
                self._finish()
                return
            timeout = 200 if self.exit is not None else None  # after exit, don't wait forever on leaked pipe holders
            if self.execs.by_pid:
                timeout = self.execs.timeout(timeout)
            events = self.hub.poll.poll(timeout)
            if not events and self.execs.by_pid:
                self.execs.deadlines()
            if not events and self.exit is not None:
                self.io.close_pipes()
                continue
            for fd, ev in events:
                if fd == sig_r:
                    try:
                        os.read(sig_r, 512)
                    except BlockingIOError:
                        pass
                    self._reap()
                else:
                    self._ready(fd, ev)

    def _ready(self, fd: int, ev: int) -> None:
        if fd == self.status_sock.fileno():
            self._spawner_ready()
        elif fd in self.io.pipes:
            self.io.pipe_ready(fd)
        elif fd in self.execs.by_fd:
            self.execs.output(fd)
        elif self.hub.listener is not None and fd == self.hub.listener.fileno():
            self.hub.accept()
        elif fd in self.hub.clients:
            self._client_ready(fd, ev)

    def _spawner_ready(self) -> None:
        """The fork server connection (berthd's end) spoke or hung up."""
        sock = self.status_sock
        assert isinstance(sock, socket.socket)  # polled only while open: _Closed has fd -1
        try:
            data = sock.recv(64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            return
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

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.io.log.reaped(pid):
                pass
            elif pid == self.init_pid and self.exit is None:
                code = os.waitstatus_to_exitcode(status)
                code = 128 - code if code < 0 else code
                self._exited(code)
            elif pid == self.setup_helper.pid and not self.start_sent and self.exit is None:
                # The helper left before "start": it aborted (and reaped) the init.
                self._exited(137, "container aborted before start")
            elif pid in self.execs.by_pid:
                code = os.waitstatus_to_exitcode(status)
                self.execs.exited(self.execs.by_pid[pid], 128 - code if code < 0 else code)

    def _exited(self, code: int, error: str = "") -> None:
        from berth import runtime
        self.execs.close_context()
        oom = False
        try:
            oom = bool(runtime.oom_killed(self._spec()))
        except Exception:
            pass
        self.exit = ExitStatus(exit_code=code, oom_killed=oom, finished_at=now(), error=error)

    def _finish(self) -> None:
        """Init has exited and its output is drained: record, tell waiters, leave."""
        from berth import runtime
        assert self.exit is not None
        try:
            self.io.log.flush()
        except OSError as e:
            _warn(f"flushing the log: {e}")
        try:
            runtime.delete(self._spec())
        except Exception:
            pass
        line = protocol.encode(self.exit)
        try:
            write_atomic(self.req.exit_file, line)
        except OSError as e:  # a full disk: berthd still hears of the exit from the waiters' line
            _warn(f"recording the exit in {self.req.exit_file}: {e}")
        try:
            os.unlink(self.req.socket)
        except FileNotFoundError:
            pass
        self.execs.end_all()
        self.hub.flush_all(line)

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
            c.waiting = True  # answered in _finish
        elif isinstance(req, protocol.Kill):
            self.hub.reply(c, self._kill(req.signal))
        elif isinstance(req, protocol.State):
            status = "exited" if self.exit else ("running" if self.started else "created")
            self.hub.reply(c, StateReply(pid=self.init_pid, status=status))
        elif isinstance(req, protocol.Resize):
            self.hub.reply(c, self._resize(req))
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
            self._reap()
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
                os.kill(self.init_pid, signo)
            if not self.started:
                self.setup_helper.abort()  # the helper aborts the init it holds
            return Reply(ok=True)
        except OSError as e:
            return Reply(error=f"kill: {os.strerror(e.errno or 0)}")

    def _resize(self, req: protocol.Resize) -> Reply:
        fd = self.execs.master(req.exec) if req.exec is not None else self.io.master
        if fd is None:
            return Reply(error="no terminal")
        try:
            helper.resize(fd, req.h, req.w)
        except OSError as e:
            return Reply(error=f"resize: {os.strerror(e.errno or 0)}")
        return Reply(ok=True)
