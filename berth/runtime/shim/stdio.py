"""The shim's byte plumbing: its clients, the container's stdio, and the json-file log.

``Hub`` owns the poll set and the control socket's connections (non-blocking sends with a
backlog per client). ``ContainerIO`` owns the container's stdout/stderr pipes (or its pty),
fans each read out to the log and to every attached client, and writes stdin. ``LogWriter``
appends the json-file records (``logfile``) and rotates the log as dockerd does, or sends each
line to syslog or the journal (``logsinks``).
"""

from __future__ import annotations

import os
import select
import socket
import time

from berth.linux import fd as lfd
from berth.runtime.shim import helper, logfile, logsinks, protocol
from berth.runtime.shim.protocol import STDERR, STDOUT, Attach, SpawnRequest, frame
from berth.state.sockaddr import address

POLLIN = select.POLLIN | select.POLLPRI
POLLERR = select.POLLERR | select.POLLHUP | select.POLLNVAL
_PIPE_SIZE = 1 << 20  # the container's stdout/stderr pipes' capacity, and the most one read takes


def now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%09dZ" % int(t % 1 * 1e9)


def _widen(*pipes: int) -> None:
    """Room for a chatty container's output while the shim writes the log: it does not block
    on a full 64 KiB pipe, and the shim reads (and logs) more per wake-up."""
    for p in pipes:
        try:
            lfd.set_pipe_size(p, _PIPE_SIZE)
        except OSError:
            pass  # over /proc/sys/fs/pipe-max-size for an unprivileged user: keep the default


def _append(fd: int, data: bytes) -> int:
    """Write all of data to a file; the bytes written."""
    view, done = memoryview(data), 0
    while done < len(data):
        done += os.write(fd, view[done:])
    return done


def write_all(fd: int, data: bytes) -> bool:
    """Write everything, waiting when the fd is non-blocking and full; False when it is gone."""
    while data:
        try:
            data = data[os.write(fd, data):]
        except BlockingIOError:
            select.select([], [fd], [], 1.0)
        except OSError:
            return False
    return True


# -- clients --------------------------------------------------------------------------------


class Client:
    __slots__ = ("sock", "buf", "attached", "stdin", "stdout", "stderr", "waiting", "out", "exec", "closing")

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""
        self.attached = False
        self.stdin = self.stdout = self.stderr = False
        self.waiting = False
        self.out = b""  # unsent bytes (the socket is non-blocking)
        self.exec: object | None = None  # the exec.ExecSession this connection streams
        self.closing = False  # close once ``out`` is sent


class Hub:
    """The poll set (the shim host's, shared by its containers) and one container's control
    socket and its connections."""

    def __init__(self, poll: select.poll | None = None) -> None:
        self.poll = poll if poll is not None else select.poll()
        self.clients: dict[int, Client] = {}
        self.listener: socket.socket | None = None

    def listen(self, path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with address(path) as name:
            self.listener.bind(name)
        self.listener.listen(64)
        self.listener.setblocking(False)
        self.poll.register(self.listener.fileno(), POLLIN)

    def accept(self) -> None:
        assert self.listener is not None
        while True:
            try:
                s, _ = self.listener.accept()
            except BlockingIOError:
                return
            s.setblocking(False)
            c = Client(s)
            self.clients[s.fileno()] = c
            self.poll.register(s.fileno(), POLLIN)

    def adopt(self, sock: socket.socket) -> Client:
        """A connection made elsewhere (the spawn connection) as one of this hub's clients."""
        sock.setblocking(False)
        c = Client(sock)
        self.clients[sock.fileno()] = c
        self.poll.register(sock.fileno(), POLLIN)
        return c

    def connected(self, c: Client) -> bool:
        return c.sock.fileno() in self.clients

    def drop(self, c: Client) -> None:
        fd = c.sock.fileno()
        if fd < 0:  # dropped already
            return
        self.clients.pop(fd, None)
        try:
            self.poll.unregister(fd)
        except KeyError:
            pass
        c.sock.close()

    def send(self, c: Client, data: bytes) -> None:
        if c.out:
            c.out += data
            return
        try:
            n = c.sock.send(data)
        except BlockingIOError:
            n = 0
        except OSError:
            self.drop(c)
            return
        if n < len(data):
            c.out = data[n:]
            self.poll.modify(c.sock.fileno(), POLLIN | select.POLLOUT)
        elif c.closing:
            self.drop(c)

    def send_and_close(self, c: Client, data: bytes) -> None:
        c.closing = True
        if self.connected(c):
            self.send(c, data)

    def reply(self, c: Client, msg: protocol.Message) -> None:
        self.send(c, protocol.encode(msg))

    def ready(self, fd: int, ev: int) -> bytes | None:
        """A client's socket is ready: send its backlog, then what it sent (b"": it hung up);
        None when there is nothing to read (or it is gone)."""
        c = self.clients[fd]
        if ev & select.POLLOUT and c.out:
            try:
                n = c.sock.send(c.out)
                c.out = c.out[n:]
            except BlockingIOError:
                pass
            except OSError:
                self.drop(c)
                return None
            if not c.out:
                if c.closing:
                    self.drop(c)
                    return None
                self.poll.modify(fd, POLLIN)
        if not ev & (POLLIN | POLLERR):
            return None
        try:
            return c.sock.recv(65536)
        except BlockingIOError:
            return None
        except OSError:
            return b""

    def stop_reading(self, c: Client) -> None:
        """The client sent its last byte: poll it only to send what is left. A client dropped
        meanwhile (a reply it could not take: berthd died) has nothing left to poll."""
        if self.connected(c):
            self.poll.modify(c.sock.fileno(), select.POLLOUT if c.out else 0)

    def flush_all(self, exit_line: bytes, keep_waiters: bool = False) -> None:
        """The shim is leaving: send every client its backlog (waiters the exit), close them
        (``keep_waiters``: all but the waiters, which ``close`` ends)."""
        for c in list(self.clients.values()):
            try:
                c.sock.setblocking(True)
                c.sock.settimeout(2)
                if c.out:
                    c.sock.sendall(c.out)
                    c.out = b""
                if c.waiting:
                    c.sock.sendall(exit_line)
            except OSError:
                pass
            if not (keep_waiters and c.waiting):
                self.drop(c)
            else:
                c.waiting = False

    def close(self) -> None:
        """The container's shim is done: stop listening, drop every connection."""
        for c in list(self.clients.values()):
            self.drop(c)
        if self.listener is not None:
            self.poll.unregister(self.listener.fileno())
            self.listener.close()
            self.listener = None


# -- the json-file log ----------------------------------------------------------------------


class LogWriter:
    """The container's json-file log: records appended per read, rotated at max-size; or, for
    syslog and journald, its lines sent to a ``logsinks`` sink."""

    def __init__(self, req: SpawnRequest):
        self.req = req
        self.log = -1  # the "none" driver: no log file
        self.cri = -1  # the kubelet's log of a CRI container (CRI format, no rotation here)
        self.log_size = 0
        self.compressor = 0  # pid of the child gzipping the last rotated file
        self.partial: dict[int, bytes] = {STDOUT: b"", STDERR: b""}
        self.log_failed = False  # the last write failed (full disk): output is being dropped
        self.sink: logsinks.Sink | None = None

    def open(self) -> None:
        if self.req.remote_log is not None:
            try:
                self.sink = logsinks.open_sink(self.req.remote_log)
            except OSError as e:
                raise OSError(e.errno, f"failed to initialize logging driver: {e.strerror or e}") from None
        if self.req.log:
            self.log = os.open(self.req.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
            self.log_size = os.fstat(self.log).st_size
        if self.req.cri_log:
            self.cri = os.open(self.req.cri_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)

    def reopen_cri(self) -> protocol.Reply:
        """The CRI log again at its path: a new file there once the kubelet renamed the old one."""
        if not self.req.cri_log:
            return protocol.Reply(error="container has no CRI log")
        try:
            fd = os.open(self.req.cri_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        except OSError as e:
            return protocol.Reply(error=f"reopen {self.req.cri_log}: {os.strerror(e.errno or 0)}")
        old, self.cri = self.cri, fd
        if old >= 0:
            os.close(old)
        return protocol.Reply(ok=True)

    def reaped(self, pid: int) -> bool:
        """``pid`` was the gzip child's."""
        if pid != self.compressor:
            return False
        self.compressor = 0
        return True

    def flush(self) -> None:
        """Log what is left of unfinished lines (the container has exited)."""
        for p in self.partial:
            if self.partial[p]:
                self._log(p, self.partial[p], final=True)
                self.partial[p] = b""

    def chunk(self, stream: int, data: bytes) -> None:
        """Log what one read brought: its whole lines at once, a line >= 16 KiB without its
        newline as a record of its own; the rest waits for the next read."""
        buf = self.partial[stream] + data
        cut = buf.rfind(b"\n") + 1
        rest = buf[cut:]
        long = len(rest) >= 16384
        if long:
            cut, rest = len(buf), b""
        self.partial[stream] = rest
        if cut:
            self._log(stream, buf[:cut], long)

    def close(self) -> None:
        if self.sink is not None:
            self.sink.close()
            self.sink = None

    def _log(self, stream: int, lines: bytes, partial: bool = False, final: bool = False) -> None:
        """Append the records of ``lines`` (logfile.encode), rotating as max-size says; or send
        them, a message a line (``partial``: the last one is a long line's first part). A CRI
        container's lines also go to the kubelet's log, in the CRI format.

        A full disk: as dockerd's json-file logger, drop what cannot be written and go on
        (attached clients still get it); the container is not taken down for it."""
        try:
            self._write(stream, lines, partial, final)
        except OSError as e:
            if not self.log_failed:
                try:
                    os.write(2, f"berth-shim: writing the log: {e}; dropping output until it works\n".encode())
                except OSError:
                    pass
            self.log_failed = True
        else:
            self.log_failed = False

    def _write(self, stream: int, lines: bytes, partial: bool, final: bool) -> None:
        name, t = "stdout" if stream == STDOUT else "stderr", now()
        if self.cri >= 0:
            # the last line of all is full in CRI terms, newline or not (containerd's too)
            _append(self.cri, logfile.encode_cri(lines + b"\n" if final else lines, name, t))
        if self.sink is not None:
            parts = lines.split(b"\n")
            last = parts.pop()
            for line in parts:
                self.sink.send(stream, line, False)
            if last:
                self.sink.send(stream, last, partial)
            return
        if self.log < 0:
            return
        blob = logfile.encode(lines, name, t)
        while blob:
            n = len(blob) if self.req.log_max_size <= 0 else logfile.cut(blob, self.req.log_max_size - self.log_size)
            self.log_size += _append(self.log, blob[:n] if n < len(blob) else blob)
            blob = blob[n:]
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
                helper.gzip_child(f"{path}.1")
            self.compressor = pid


# -- the container's stdio ------------------------------------------------------------------


class ContainerIO:
    """The container's output pipes (or pty master) and its stdin."""

    def __init__(self, hub: Hub, req: SpawnRequest):
        self.hub = hub
        self.req = req
        self.log = LogWriter(req)
        self.pipes: dict[int, int] = {}  # read fd -> stream
        self.stdin_w: int | None = None
        self.master: int | None = None  # the container's pty (with a tty)
        self._out: tuple[int, int] = (-1, -1)  # the read ends, registered once the init exists

    def make_pipes(self) -> tuple[int, int, int]:
        """The container's stdin, stdout and stderr ends, for the setup helper."""
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        _widen(out_r, err_r)
        if self.req.stdin and not self.req.tty:
            in_r, in_w = os.pipe2(os.O_CLOEXEC)
            self.stdin_w = in_w
        else:
            in_r = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        self._out = (out_r, err_r)
        return in_r, out_w, err_w

    def adopt_master(self, master: int) -> None:
        """The container's terminal: its output is stdout, its input (if kept) stdin."""
        self.master = master
        if self.req.console_size and all(self.req.console_size):
            helper.resize(master, *self.req.console_size)
        os.set_blocking(master, False)
        self.pipes[master] = STDOUT
        self.hub.poll.register(master, POLLIN)
        if self.req.stdin:
            self.stdin_w = os.dup(master)

    def register(self) -> None:
        for fd, stream in zip(self._out, (STDOUT, STDERR)):
            os.set_blocking(fd, False)
            self.pipes[fd] = stream
            self.hub.poll.register(fd, POLLIN)
        self._out = (-1, -1)  # owned by ``pipes`` now

    def pipe_ready(self, fd: int) -> None:
        try:
            data = os.read(fd, _PIPE_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.close_pipe(fd)
            return
        stream = self.pipes[fd]
        self.log.chunk(stream, data)
        framed = data if self.req.tty else frame(stream, data)
        for c in list(self.hub.clients.values()):
            if c.attached and (c.stdout if stream == STDOUT else c.stderr):
                self.hub.send(c, framed)

    def close_pipe(self, fd: int) -> None:
        self.hub.poll.unregister(fd)
        os.close(fd)
        del self.pipes[fd]

    def close_pipes(self) -> None:
        for fd in list(self.pipes):
            self.close_pipe(fd)

    def attach(self, c: Client, req: Attach, rest: bytes, reply: bool = True) -> None:
        c.attached = True
        c.stdin, c.stdout, c.stderr = req.stdin, req.stdout, req.stderr
        if reply:
            self.hub.reply(c, protocol.Reply(ok=True))
        if rest and c.stdin:
            self.write_stdin(rest)

    def attached_input(self, c: Client, data: bytes, ev: int) -> None:
        """An attached client sent stdin, or half-closed (b"")."""
        if data:
            if c.stdin:
                self.write_stdin(data)
            return
        if c.stdin and self.req.stdin_once:
            self.close_stdin()
        if ev & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
            self.hub.drop(c)  # gone both ways (poll keeps reporting a hang-up: never spin on it)
            return
        # stdin from this client is over (a half-close); the stream stays open for output
        self.hub.stop_reading(c)

    def write_stdin(self, data: bytes) -> None:
        if self.stdin_w is None:
            return
        if not write_all(self.stdin_w, data):  # blocking: back-pressure on a slow reader
            self.close_stdin()

    def close_stdin(self) -> None:
        if self.stdin_w is not None:
            os.close(self.stdin_w)
            self.stdin_w = None

    def close(self) -> None:
        """Every fd of the container's stdio and log (the shim host outlives this container)."""
        self.close_pipes()
        self.close_stdin()
        for fd in (*self._out, self.log.log):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._out = (-1, -1)
        self.log.log = -1
        self.log.close()
