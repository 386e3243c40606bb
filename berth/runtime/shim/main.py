"""The shim: one small synchronous process per running container (DESIGN.md §1).

It is forked by the fork server, double-forked away from berthd, and owns the container:
it creates it through the runtime, holds its stdio, writes the json-file log, fans output
out to every attached client, forwards stdin, reaps the init and records its exit status
atomically in ``exit.json`` — so berthd may die and come back at any time.

A poll loop, not asyncio: the shim must stay small (its private memory is what each running
container costs on the host).
"""

from __future__ import annotations

import errno
import json
import os
import select
import signal
import socket
import threading
import time
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from pathlib import Path

from berth.runtime.shim.protocol import EXIT, STDERR, STDOUT, ExitStatus, SpawnRequest, frame

_POLLIN = select.POLLIN | select.POLLPRI
_POLLERR = select.POLLERR | select.POLLHUP | select.POLLNVAL
_ENC = json.JSONEncoder(separators=(",", ":"))


def _now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%09dZ" % int(t % 1 * 1e9)


def _write_atomic(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)


def _close_all_but(*keep: int) -> None:
    """In a freshly forked child: close every inherited fd except ``keep`` (close_range(2)
    between them: no listing of /proc/self/fd)."""
    lo = 0
    for fd in sorted(set(k for k in keep if k >= 0)):
        if fd > lo:
            os.closerange(lo, fd)
        lo = fd + 1
    os.closerange(lo, 1 << 20)


class _Closed:
    """Stands in for the fork server connection once it is closed."""

    @staticmethod
    def fileno() -> int:
        return -1


class _Client:
    __slots__ = ("sock", "buf", "attached", "stdin", "stdout", "stderr", "waiting", "out", "exec", "closing")

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""
        self.attached = False
        self.stdin = self.stdout = self.stderr = False
        self.waiting = False
        self.out = b""  # unsent bytes (the socket is non-blocking)
        self.exec: _Exec | None = None  # this connection is an exec's stream
        self.closing = False  # close once ``out`` is sent


class _Exec:
    """A process started by ``docker exec``: its stdio, its stream, its exit."""

    __slots__ = ("id", "pid", "client", "fds", "stdin_w", "master", "code", "deadline")

    def __init__(self, id: str, client: _Client):
        self.id = id
        self.pid = 0
        self.client: _Client | None = client
        self.fds: dict[int, int] = {}  # output fd -> stream
        self.stdin_w: int | None = None
        self.master: int | None = None
        self.code: int | None = None
        self.deadline = 0.0  # after exit: stop waiting for output held by leftover children


class Shim:
    def __init__(self, req: SpawnRequest, status_sock: socket.socket):
        self.req = req
        self.status_sock = status_sock
        self.clients: dict[int, _Client] = {}
        self.poll = select.poll()
        self.init_pid = 0
        self.helper_pid = 0
        self.start_sent = False
        self.spec = None
        self.exit: ExitStatus | None = None
        self.started = False
        self.pipes: dict[int, int] = {}  # read fd -> stream
        self.stdin_w: int | None = None
        self.master: int | None = None  # the container's pty (with a tty)
        self.partial: dict[int, bytes] = {STDOUT: b"", STDERR: b""}
        self.execs: dict[int, _Exec] = {}  # by pid
        self.exec_fds: dict[int, _Exec] = {}  # output fd -> its exec
        self.exec_ctx = None  # runtime.container.ExecContext, made at the first exec

    # -- setup ------------------------------------------------------------------------------

    def setup(self) -> None:
        """Create the container through a short-lived helper child.

        The helper does the heavy Python work (decode the spec, plan, fork the init) and exits
        once the init has been released (or failed), so those allocations never become this
        long-lived process's private memory: the shim itself stays a small poll loop. The init
        is reparented to the shim, a child subreaper, and reaped here.
        """
        from berth.linux import prctl
        prctl.set_child_subreaper()
        self.log = -1  # the "none" driver: no log file
        self.log_size = 0
        self.compressor = 0  # pid of the child gzipping the last rotated file
        if self.req.log:
            self.log = os.open(self.req.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
            self.log_size = os.fstat(self.log).st_size
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        if self.req.stdin and not self.req.tty:
            in_r, in_w = os.pipe2(os.O_CLOEXEC)
            self.stdin_w = in_w
        else:
            in_r = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        con_parent, con_child = socket.socketpair() if self.req.tty else (None, None)
        rep_r, rep_w = os.pipe2(os.O_CLOEXEC)
        ctl_r, ctl_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:
            # Only the helper's own ends stay open: were it (or the init) to hold the shim's
            # end of ctl or rep, the shim's death could never unblock it.
            _close_all_but(0, 1, 2, in_r, out_w, err_w, rep_w, ctl_r, con_child.fileno() if con_child else 2)
            _helper(self.req, in_r, out_w, err_w, rep_w, ctl_r, con_child.fileno() if con_child else None)
        self.helper_pid = pid
        for fd in (out_w, err_w, in_r, rep_w, ctl_r):
            os.close(fd)
        if con_child is not None:
            con_child.close()
        self.rep = os.fdopen(rep_r, "rb", buffering=0)
        self.ctl_w: int | None = ctl_w
        reply = json.loads(self._helper_line() or b'{"error":"container setup helper exited"}')
        if "error" in reply:
            raise RuntimeError(reply["error"])
        self.init_pid = reply["pid"]
        if con_parent is not None:
            master = _recv_master(con_parent)
            self.master = master
            if self.req.console_size and all(self.req.console_size):
                _resize(master, *self.req.console_size)
            os.set_blocking(master, False)
            self.pipes[master] = STDOUT
            self.poll.register(master, _POLLIN)
            if self.req.stdin:
                self.stdin_w = os.dup(master)
        for fd, stream in ((out_r, STDOUT), (err_r, STDERR)):
            os.set_blocking(fd, False)
            self.pipes[fd] = stream
            self.poll.register(fd, _POLLIN)

        try:
            os.unlink(self.req.socket)
        except FileNotFoundError:
            pass
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.req.socket)
        self.listener.listen(64)
        self.listener.setblocking(False)
        self.poll.register(self.listener.fileno(), _POLLIN)

    def _helper_line(self) -> bytes:
        line = b""
        while not line.endswith(b"\n"):
            b = self.rep.read(1)
            if not b:
                break
            line += b
        return line

    def _spec(self):  # type: ignore[no-untyped-def]
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
        self.poll.register(sig_r, _POLLIN)
        self._reap()
        while True:
            if self.exit is not None and not self.pipes:
                self._finish()
                return
            timeout = 200 if self.exit is not None else None  # after exit, don't wait forever on leaked pipe holders
            if self.execs:
                timeout = self._exec_timeout(timeout)
            events = self.poll.poll(timeout)
            if not events and self.execs:
                self._exec_deadlines()
            if not events and self.exit is not None:
                for fd in list(self.pipes):
                    self._close_pipe(fd)
                continue
            for fd, ev in events:
                if fd == sig_r:
                    try:
                        os.read(sig_r, 512)
                    except BlockingIOError:
                        pass
                    self._reap()
                elif fd == self.status_sock.fileno():
                    self._spawner_ready()
                elif fd in self.pipes:
                    self._pipe_ready(fd)
                elif fd in self.exec_fds:
                    self._exec_output(fd)
                elif fd == self.listener.fileno():
                    self._accept()
                elif fd in self.clients:
                    self._client_ready(fd, ev)

    def _spawner_ready(self) -> None:
        """The fork server connection (berthd's end) spoke or hung up."""
        try:
            data = self.status_sock.recv(64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            return
        self.poll.unregister(self.status_sock.fileno())
        self.status_sock.close()
        self.status_sock = _Closed()
        if not self.start_sent and self.exit is None:
            if self.init_pid:
                try:
                    os.kill(self.init_pid, 9)
                except OSError:
                    pass
            if self.ctl_w is not None:
                os.close(self.ctl_w)  # the helper aborts the init it holds
                self.ctl_w = None

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.compressor:
                self.compressor = 0
            elif pid == self.init_pid and self.exit is None:
                code = os.waitstatus_to_exitcode(status)
                code = 128 - code if code < 0 else code
                self._exited(code)
            elif pid == self.helper_pid and not self.start_sent and self.exit is None:
                # The helper left before "start": it aborted (and reaped) the init.
                self._exited(137, "container aborted before start")
            elif pid in self.execs:
                code = os.waitstatus_to_exitcode(status)
                self._exec_exited(self.execs[pid], 128 - code if code < 0 else code)

    def _exited(self, code: int, error: str = "") -> None:
        from berth import runtime
        if self.exec_ctx is not None:  # let go of the container's namespaces
            self.exec_ctx.close()
            self.exec_ctx = None
        oom = False
        try:
            oom = bool(runtime.oom_killed(self._spec()))
        except Exception:
            pass
        self.exit = ExitStatus(exit_code=code, oom_killed=oom, finished_at=_now(), error=error)

    def _finish(self) -> None:
        """Init has exited and its output is drained: record, tell waiters, leave."""
        from berth import runtime
        assert self.exit is not None
        for p in self.partial:
            if self.partial[p]:
                self._log(p, self.partial[p])
                self.partial[p] = b""
        try:
            runtime.delete(self._spec())
        except Exception:
            pass
        data = _ENC.encode({"exit_code": self.exit.exit_code, "oom_killed": self.exit.oom_killed,
                            "finished_at": self.exit.finished_at, "error": self.exit.error}).encode()
        _write_atomic(self.req.exit_file, data)
        try:
            os.unlink(self.req.socket)
        except FileNotFoundError:
            pass
        for e in list(self.execs.values()):
            self._exec_exited(e, e.code if e.code is not None else 137)
            self._exec_done(e)
        for c in list(self.clients.values()):
            try:
                c.sock.setblocking(True)
                c.sock.settimeout(2)
                if c.out:
                    c.sock.sendall(c.out)
                if c.waiting:
                    c.sock.sendall(data + b"\n")
            except OSError:
                pass
            c.sock.close()

    # -- container output -------------------------------------------------------------------

    def _pipe_ready(self, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close_pipe(fd)
            return
        stream = self.pipes[fd]
        self._log_chunk(stream, data)
        framed = data if self.req.tty else frame(stream, data)
        for c in list(self.clients.values()):
            if c.attached and (c.stdout if stream == STDOUT else c.stderr):
                self._send(c, framed)

    def _close_pipe(self, fd: int) -> None:
        self.poll.unregister(fd)
        os.close(fd)
        del self.pipes[fd]

    def _log_chunk(self, stream: int, data: bytes) -> None:
        buf = self.partial[stream] + data
        lines = buf.split(b"\n")
        self.partial[stream] = lines.pop()
        if len(self.partial[stream]) >= 16384:
            lines.append(self.partial[stream])
            self.partial[stream] = b""
            # the last element has no newline; mark by not appending one below
            for line in lines[:-1]:
                self._log(stream, line + b"\n")
            self._log(stream, lines[-1])
            return
        for line in lines:
            self._log(stream, line + b"\n")

    def _log(self, stream: int, line: bytes) -> None:
        if self.log < 0:
            return
        rec = '{"log":%s,"stream":"%s","time":"%s"}\n' % (
            encode_basestring(line.decode("utf-8", "replace")),
            "stdout" if stream == STDOUT else "stderr", _now())
        self.log_size += os.write(self.log, rec.encode())
        if 0 < self.req.log_max_size <= self.log_size:
            self._rotate()

    def _rotate(self) -> None:
        """json-file rotation as dockerd's: log -> log.1 -> ... -> log.<max-file - 1>, the oldest
        dropped; with compress, log.1 becomes log.1.gz in a forked child (the loop never waits
        on gzip, except for the previous file's when rotations outrun it)."""
        path, keep = self.req.log, self.req.log_max_file
        if keep < 2:
            os.ftruncate(self.log, 0)
            self.log_size = 0
            return
        if self.compressor:
            try:
                os.waitpid(self.compressor, 0)
            except ChildProcessError:
                pass
            self.compressor = 0
        ext = ".gz" if self.req.log_compress else ""
        for i in range(keep - 1, 1, -1):
            try:
                os.rename(f"{path}.{i - 1}{ext}", f"{path}.{i}{ext}")
            except FileNotFoundError:
                pass
        os.rename(path, f"{path}.1")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        os.dup2(fd, self.log, inheritable=False)
        os.close(fd)
        self.log_size = 0
        if ext:
            pid = os.fork()
            if pid == 0:
                _gzip_child(f"{path}.1")
            self.compressor = pid

    # -- clients ----------------------------------------------------------------------------

    def _accept(self) -> None:
        while True:
            try:
                s, _ = self.listener.accept()
            except BlockingIOError:
                return
            s.setblocking(False)
            c = _Client(s)
            self.clients[s.fileno()] = c
            self.poll.register(s.fileno(), _POLLIN)

    def _drop(self, c: _Client) -> None:
        fd = c.sock.fileno()
        self.clients.pop(fd, None)
        try:
            self.poll.unregister(fd)
        except KeyError:
            pass
        c.sock.close()

    def _send(self, c: _Client, data: bytes) -> None:
        if c.out:
            c.out += data
            return
        try:
            n = c.sock.send(data)
        except BlockingIOError:
            n = 0
        except OSError:
            self._drop(c)
            return
        if n < len(data):
            c.out = data[n:]
            self.poll.modify(c.sock.fileno(), _POLLIN | select.POLLOUT)
        elif c.closing:
            self._drop(c)

    def _send_and_close(self, c: _Client, data: bytes) -> None:
        c.closing = True
        if c.sock.fileno() in self.clients:
            self._send(c, data)

    def _client_ready(self, fd: int, ev: int) -> None:
        c = self.clients[fd]
        if ev & select.POLLOUT and c.out:
            try:
                n = c.sock.send(c.out)
                c.out = c.out[n:]
            except BlockingIOError:
                pass
            except OSError:
                self._drop(c)
                return
            if not c.out:
                if c.closing:
                    self._drop(c)
                    return
                self.poll.modify(fd, _POLLIN)
        if not ev & (_POLLIN | _POLLERR):
            return
        try:
            data = c.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if c.exec is not None:
            self._exec_input(c, data)
            return
        if c.attached:
            if not data:
                if c.stdin and self.req.stdin_once:
                    self._close_stdin()
                if ev & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
                    self._drop(c)  # gone both ways (poll keeps reporting a hang-up: never spin on it)
                    return
                # stdin from this client is over (a half-close); the stream stays open for output
                self.poll.modify(fd, select.POLLOUT if c.out else 0)
                return
            if c.stdin:
                self._write_stdin(data)
            return
        if not data:
            self._drop(c)
            return
        c.buf += data
        if b"\n" not in c.buf:
            return
        line, _, rest = c.buf.partition(b"\n")
        c.buf = b""
        try:
            req = json.loads(line)
        except ValueError:
            self._drop(c)
            return
        self._handle(c, req, rest)

    def _reply(self, c: _Client, obj: dict) -> None:
        self._send(c, _ENC.encode(obj).encode() + b"\n")

    def _handle(self, c: _Client, req: dict, rest: bytes) -> None:
        op = req.get("op")
        if op == "start":
            self._reply(c, self._start())
        elif op == "attach":
            c.attached = True
            c.stdin, c.stdout, c.stderr = bool(req.get("stdin")), bool(req.get("stdout")), bool(req.get("stderr"))
            self._reply(c, {"ok": True})
            if rest and c.stdin:
                self._write_stdin(rest)
        elif op == "wait":
            c.waiting = True  # answered in _finish
        elif op == "kill":
            try:
                if self.exit is None and self.init_pid:
                    os.kill(self.init_pid, int(req.get("signal", 15)))
                if not self.started and self.ctl_w is not None:
                    os.close(self.ctl_w)  # the helper aborts the init it holds
                    self.ctl_w = None
                self._reply(c, {"ok": True})
            except OSError as e:
                self._reply(c, {"error": f"kill: {os.strerror(e.errno or 0)}"})
        elif op == "state":
            status = "exited" if self.exit else ("running" if self.started else "created")
            self._reply(c, {"pid": self.init_pid, "status": status})
        elif op == "resize":
            self._reply(c, self._resize_op(req))
        elif op == "exec":
            self._exec(c, req, rest)
        else:
            self._reply(c, {"error": f"unknown op {op!r}"})

    def _start(self) -> dict:
        if self.started:
            return {"ok": True}
        if self.ctl_w is None:
            return {"error": "container is not waiting to start"}
        self.start_sent = True
        os.write(self.ctl_w, b"start\n")
        os.close(self.ctl_w)
        self.ctl_w = None
        reply = json.loads(self._helper_line() or b'{"error":"container setup helper exited"}')
        if "error" in reply:
            err = reply["error"]
            self._reap()
            if self.exit is None:
                self._exited(127 if "not found" in err or "no such file" in err else 126, err)
            else:
                self.exit.error = err
            return {"error": err}
        self.started = True
        return {"ok": True}

    def _write_stdin(self, data: bytes) -> None:
        if self.stdin_w is None:
            return
        if not _write_all(self.stdin_w, data):  # blocking: back-pressure on a slow reader
            self._close_stdin()

    def _close_stdin(self) -> None:
        if self.stdin_w is not None:
            os.close(self.stdin_w)
            self.stdin_w = None

    def _resize_op(self, req: dict) -> dict:
        if "exec" in req:
            e = next((x for x in self.execs.values() if x.id == req["exec"]), None)
            fd = e.master if e is not None else None
        else:
            fd = self.master
        if fd is None:
            return {"error": "no terminal"}
        try:
            _resize(fd, int(req.get("h", 0)), int(req.get("w", 0)))
        except OSError as e:
            return {"error": f"resize: {os.strerror(e.errno or 0)}"}
        return {"ok": True}

    # -- exec -------------------------------------------------------------------------------

    def _exec(self, c: _Client, req: dict, rest: bytes) -> None:
        """Start a process in the container through a short-lived helper child (as setup)."""
        if not self.started or self.exit is not None:
            self._reply(c, {"error": "container is not running"})
            return
        if self.exec_ctx is None:
            try:
                from berth.runtime.container import ExecContext
                cache = self.req.seccomp_cache
                with open(os.path.join(self.req.bundle, "config.json"), "rb") as f:
                    raw = f.read()
                self.exec_ctx = ExecContext.prepare(raw, self.init_pid, Path(cache) if cache else None)
            except Exception as ex:
                self._reply(c, {"error": str(ex) or ex.__class__.__name__, "exit_code": 126})
                return
        tty = bool(req.get("tty"))
        e = _Exec(str(req.get("id", "")), c)
        child: list[int] = []
        con_parent = con_child = None
        if tty:
            con_parent, con_child = socket.socketpair()
            in_r = out_w = err_w = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
            child = [in_r, con_child.fileno()]
        else:
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            if req.get("stdin"):
                in_r, e.stdin_w = os.pipe2(os.O_CLOEXEC)
            else:
                in_r = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
            e.fds = {out_r: STDOUT, err_r: STDERR}
            child = [in_r, out_w, err_w]
        rep_r, rep_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:
            _close_all_but(0, 1, 2, rep_w, *child, *self.exec_ctx.fds(), con_child.fileno() if con_child else 2)
            _exec_helper(self.exec_ctx, req, in_r, out_w, err_w, rep_w, con_child.fileno() if con_child else None)
        os.close(rep_w)
        for fd in set(child):
            if con_child is None or fd != con_child.fileno():
                os.close(fd)
        if con_child is not None:
            con_child.close()
        with os.fdopen(rep_r, "rb") as f:
            line = f.readline()
        reply = json.loads(line or b'{"error":"exec helper exited","exit_code":126}')
        if "error" in reply:
            for fd in list(e.fds) + ([e.stdin_w] if e.stdin_w is not None else []):
                os.close(fd)
            if con_parent is not None:
                con_parent.close()
            self._reply(c, reply)
            return
        if con_parent is not None:
            e.master = _recv_master(con_parent)
            e.fds = {e.master: STDOUT}
            if req.get("stdin"):
                e.stdin_w = os.dup(e.master)
        e.pid = reply["pid"]
        c.exec = e
        c.attached = True
        self.execs[e.pid] = e
        for fd in e.fds:
            os.set_blocking(fd, False)
            self.exec_fds[fd] = e
            self.poll.register(fd, _POLLIN)
        self._reply(c, {"pid": e.pid})
        if rest:
            self._exec_input(c, rest)

    def _exec_input(self, c: _Client, data: bytes) -> None:
        e = c.exec
        assert e is not None
        if data:
            if e.stdin_w is not None and not _write_all(e.stdin_w, data):
                self._exec_close_stdin(e)
            return
        # the client half-closed (no more stdin) or left: the process keeps running
        self.poll.modify(c.sock.fileno(), select.POLLOUT if c.out else 0)
        if e.master is None:
            self._exec_close_stdin(e)

    def _exec_close_stdin(self, e: _Exec) -> None:
        if e.stdin_w is not None:
            os.close(e.stdin_w)
            e.stdin_w = None

    def _exec_output(self, fd: int) -> None:
        e = self.exec_fds[fd]
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._exec_close_fd(e, fd)
            return
        if e.client is not None and e.client.sock.fileno() in self.clients:
            self._send(e.client, frame(e.fds[fd], data))

    def _exec_close_fd(self, e: _Exec, fd: int) -> None:
        self.poll.unregister(fd)
        os.close(fd)
        del e.fds[fd]
        del self.exec_fds[fd]
        if e.master == fd:
            e.master = None
        if not e.fds and e.code is not None:
            self._exec_done(e)

    def _exec_exited(self, e: _Exec, code: int) -> None:
        if e.code is None:
            e.code = code
            e.deadline = time.monotonic() + 0.2
        if not e.fds:
            self._exec_done(e)

    def _exec_done(self, e: _Exec) -> None:
        for fd in list(e.fds):
            self._exec_close_fd(e, fd)
        self._exec_close_stdin(e)
        self.execs.pop(e.pid, None)
        c, e.client = e.client, None
        if c is not None and c.sock.fileno() in self.clients:
            self._send_and_close(c, frame(EXIT, _ENC.encode({"exit_code": e.code}).encode()))

    def _exec_timeout(self, timeout: int | None) -> int | None:
        deadlines = [e.deadline for e in self.execs.values() if e.code is not None]
        if not deadlines:
            return timeout
        ms = max(0, int((min(deadlines) - time.monotonic()) * 1000) + 1)
        return ms if timeout is None else min(ms, timeout)

    def _exec_deadlines(self) -> None:
        now = time.monotonic()
        for e in list(self.execs.values()):
            if e.code is not None and e.deadline <= now:
                self._exec_done(e)


def _gzip_child(src: str) -> None:
    """In a forked child of the shim: src -> src.gz (atomically), then remove src; exit."""
    code = 0
    try:
        _close_all_but(2)
        signal.set_wakeup_fd(-1)
        import zlib
        tmp = f"{src}.gz.tmp"
        with open(src, "rb") as fi, open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640), "wb") as fo:
            z = zlib.compressobj(6, zlib.DEFLATED, 31)  # gzip framing
            while chunk := fi.read(1 << 20):
                fo.write(z.compress(chunk))
            fo.write(z.flush())
        os.rename(tmp, f"{src}.gz")
        os.unlink(src)
    except BaseException:
        code = 1
    os._exit(code)


def _recv_master(sock: socket.socket) -> int:
    """The pty master the container's init (or an exec child) sent over SCM_RIGHTS."""
    sock.settimeout(10)
    try:
        _, fds, _, _ = socket.recv_fds(sock, 16, 1)
    finally:
        sock.close()
    if not fds:
        raise RuntimeError("no terminal received from the container")
    os.set_inheritable(fds[0], False)
    return fds[0]


def _resize(fd: int, rows: int, cols: int) -> None:
    from berth.linux import tty
    tty.set_winsize(fd, rows, cols)


def _write_all(fd: int, data: bytes) -> bool:
    """Write everything, waiting when the fd is non-blocking and full; False when it is gone."""
    while data:
        try:
            data = data[os.write(fd, data):]
        except BlockingIOError:
            select.select([], [fd], [], 1.0)
        except OSError:
            return False
    return True


def _exec_helper(ctx, req: dict, in_r: int, out_w: int, err_w: int,  # type: ignore[no-untyped-def]
                 rep_w: int, console: int | None) -> None:
    """The exec child: start the process in the container, report its pid, exit.

    ``ctx`` (the shim's ExecContext, inherited) holds the spec, host facts, seccomp program,
    cgroup and namespace fds. Joining the cgroup waits for an RCU grace period on most
    kernels, so a thread does it while this one plans; the process forked next starts in
    the cgroup. The process is reparented to the shim (a child subreaper) when this exits."""
    code = 0
    try:
        from berth import runtime
        from berth.runtime.container import exec_process, exec_spec
        signal.set_wakeup_fd(-1)  # the shim's wakeup pipe is not ours (closed above)
        joiner = None
        if ctx.self_join is None and ctx.procs:  # the child cannot move itself cheaply
            joiner = threading.Thread(target=ctx.join_cgroup)
            joiner.start()
        try:
            try:
                spec = exec_spec(ctx.spec, args=list(req["args"]), env=list(req.get("env") or []),
                                 cwd=req.get("cwd") or "", user=req.get("user") or "", tty=bool(req.get("tty")),
                                 privileged=bool(req.get("privileged")))
                plan = ctx.plan(spec)
            finally:
                if joiner is not None:
                    joiner.join()
            pid = exec_process(spec, ctx.init_pid, stdin=in_r, stdout=out_w, stderr=err_w, console_socket=console,
                               context=ctx, plan=plan, in_cgroup=joiner is not None)
        except runtime.ExecFailed as e:
            os.write(rep_w, _ENC.encode({"error": str(e), "exit_code": 126}).encode() + b"\n")
            os._exit(0)
        except Exception as e:
            os.write(rep_w, _ENC.encode({"error": str(e) or e.__class__.__name__, "exit_code": 126}).encode()
                     + b"\n")
            os._exit(0)
        os.write(rep_w, _ENC.encode({"pid": pid}).encode() + b"\n")
    except BaseException:
        import traceback
        traceback.print_exc()
        code = 1
    os._exit(code)


def _helper(req: SpawnRequest, in_r: int, out_w: int, err_w: int, rep_w: int, ctl_r: int,
            console: int | None = None) -> None:
    """The setup child: create the init, report its pid, release it on "start", then exit."""
    code = 0
    try:
        from pathlib import Path

        from berth import runtime
        from berth.oci.spec import decode_spec
        with open(os.path.join(req.bundle, "config.json"), "rb") as f:
            spec = decode_spec(f.read())
        cache = Path(req.seccomp_cache) if req.seccomp_cache else None
        try:
            init = runtime.create(spec, stdin=in_r, stdout=out_w, stderr=err_w, seccomp_cache=cache,
                                  console_socket=console)
        except Exception as e:
            os.write(rep_w, _ENC.encode({"error": str(e) or e.__class__.__name__}).encode() + b"\n")
            os._exit(0)
        for fd in (in_r, out_w, err_w):
            os.close(fd)
        os.write(rep_w, _ENC.encode({"pid": init.pid}).encode() + b"\n")
        cmd = os.read(ctl_r, 16)
        if cmd.startswith(b"start"):
            try:
                init.start()
                os.write(rep_w, b'{"ok":true}\n')
            except runtime.ExecFailed as e:
                os.write(rep_w, _ENC.encode({"error": str(e)}).encode() + b"\n")
        else:
            init.abort()
    except BaseException:
        import traceback
        traceback.print_exc()
        code = 1
    os._exit(code)


def main(req: SpawnRequest, status_sock: socket.socket) -> None:
    """Run as the shim (called in the grandchild of the fork server; never returns)."""
    code = 0
    try:
        os.setsid()
    except OSError:
        pass
    from berth.linux import prctl
    prctl.set_name("berth-shim")
    shim = Shim(req, status_sock)
    try:
        try:
            shim.setup()
        except Exception as e:  # setup failure: report, leave no socket behind
            msg = str(e) or e.__class__.__name__
            status_sock.sendall(_ENC.encode({"error": msg}).encode() + b"\n")
            status_sock.close()
            os._exit(1)
        status_sock.sendall(_ENC.encode({"pid": shim.init_pid, "shim_pid": os.getpid()}).encode() + b"\n")
        # berthd keeps this connection open until it has sent "start": if it dies before
        # that (the connection hangs up), nobody will ever start this container: abort it.
        status_sock.setblocking(False)
        shim.poll.register(status_sock.fileno(), _POLLIN)
        shim.run()
    except BaseException:
        import traceback
        traceback.print_exc()
        code = 1
    os._exit(code)


_ = errno
