"""The shim's short-lived helper children, and the shim's end of the setup helper.

The heavy Python work (decode the spec, plan, fork the init) happens in a child forked for
it that exits once done, so those allocations never become the long-lived shim's private
memory: the shim itself stays a small poll loop. The setup helper creates the init, reports
its pid, waits for "start" (or the end of its control pipe: abort) and exits; an exec's
process is forked by the shim itself and plans itself (``exec_plan``) before it sets up;
the gzip child compresses one rotated log file. The init is reparented to the shim (a child
subreaper).

The setup helper reports on a pipe with protocol lines (SpawnReply, Reply).
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # C module: signal.signal() converts to enums
import os
import signal
import socket
import sys
import traceback
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from berth import runtime
from berth.linux import tty
from berth.oci.spec import decode_spec
from berth.runtime.container import exec_spec
from berth.runtime.shim import protocol
from berth.runtime.shim.protocol import ExecReply, Reply, SpawnReply, SpawnRequest

if TYPE_CHECKING:  # imported lazily at run time: the shim's start-up and memory are per container
    from berth.runtime.execproc import ExecContext
    from berth.runtime.external import OCIRuntime
    from berth.runtime.plan import Plan


_SIGCHLD, _SIG_DFL = int(signal.SIGCHLD), int(signal.SIG_DFL)


def close_all_but(*keep: int) -> None:
    """In a freshly forked child: close every inherited fd except ``keep`` (close_range(2)
    between them: no listing of /proc/self/fd)."""
    lo = 0
    for fd in sorted(set(k for k in keep if k >= 0)):
        if fd > lo:
            os.closerange(lo, fd)
        lo = fd + 1
    os.closerange(lo, 1 << 20)


def recv_master(sock: socket.socket) -> int:
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


def resize(fd: int, rows: int, cols: int) -> None:
    tty.set_winsize(fd, rows, cols)


class LineReader:
    """Lines from a helper's report pipe. Each report is one ``write`` of a line under
    PIPE_BUF, which the kernel keeps whole, so one read takes it (not one read per byte);
    what a read brings past a newline waits for the next line."""

    def __init__(self, fd: int):
        self.fd = fd
        self.buf = b""

    def line(self) -> bytes:
        """The next line; b"" at EOF (what came without a newline is dropped)."""
        while b"\n" not in self.buf:
            chunk = os.read(self.fd, 4096)
            if not chunk:
                self.buf = b""
                return b""
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"


def _report(fd: int, msg: protocol.Message) -> None:
    os.write(fd, protocol.encode(msg))


# -- the setup helper -----------------------------------------------------------------------


class Setup:
    """The setup helper seen from the shim: fork it, read the init's pid, start or abort."""

    def __init__(self, req: SpawnRequest):
        self.req = req
        self.pid = 0       # the helper's
        self.init_pid = 0
        self.rep = -1  # the helper's report pipe
        self.lines: LineReader | None = None
        self.ctl_w: int | None = None  # closing it before "start" aborts the init

    def spawn(self, in_r: int, out_w: int, err_w: int, console: socket.socket | None) -> None:
        """Fork the helper with the container's stdio ends (closed here once it has them);
        raises RuntimeError when the init could not be created."""
        rep_r, rep_w = os.pipe2(os.O_CLOEXEC)
        ctl_r, ctl_w = os.pipe2(os.O_CLOEXEC)
        con = console.fileno() if console is not None else None
        pid = os.fork()
        if pid == 0:
            # Only the helper's own ends stay open: were it (or the init) to hold the shim's
            # end of ctl or rep, the shim's death could never unblock it.
            close_all_but(0, 1, 2, in_r, out_w, err_w, rep_w, ctl_r, con if con is not None else 2)
            _setup_child(self.req, in_r, out_w, err_w, rep_w, ctl_r, con)
        self.pid = pid
        for fd in (out_w, err_w, in_r, rep_w, ctl_r):
            os.close(fd)
        if console is not None:
            console.close()
        self.rep = rep_r
        self.lines = LineReader(rep_r)
        self.ctl_w = ctl_w
        try:
            reply = protocol.decode(self.lines.line(), SpawnReply)
        except msgspec.DecodeError:
            reply = SpawnReply(error="container setup helper exited")
        if reply.error is not None:
            raise RuntimeError(reply.error)
        self.init_pid = reply.pid

    @property
    def waiting(self) -> bool:
        """The init was created and waits for start (or abort)."""
        return self.ctl_w is not None

    def start(self) -> str | None:
        """Release the init; the error when its process could not be executed."""
        assert self.ctl_w is not None
        os.write(self.ctl_w, b"start\n")
        self.abort()
        try:
            assert self.lines is not None
            return protocol.decode(self.lines.line(), Reply).error
        except msgspec.DecodeError:
            return "container setup helper exited"

    def abort(self) -> None:
        """Let go of the control pipe: before start, the helper aborts the init it holds."""
        if self.ctl_w is not None:
            os.close(self.ctl_w)
            self.ctl_w = None

    def close(self) -> None:
        """Let go of both pipes (the container is gone)."""
        self.abort()
        if self.rep >= 0:
            os.close(self.rep)
            self.rep = -1


def _setup_child(req: SpawnRequest, in_r: int, out_w: int, err_w: int, rep_w: int, ctl_r: int,
                 console: int | None = None) -> None:
    """The setup child: create the init, report its pid, release it on "start", then exit."""
    code = 0
    try:
        # A host forks this while serving other containers: its wake-up pipe (closed here)
        # and SIGCHLD handler are not ours, and the init must not inherit them.
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        if req.runtime_path:
            _external_setup(req, in_r, out_w, err_w, rep_w, ctl_r, console)
            os._exit(0)
        with open(os.path.join(req.bundle, "config.json"), "rb") as f:
            spec = decode_spec(f.read())
        cache = Path(req.seccomp_cache) if req.seccomp_cache else None
        try:
            init = runtime.create(spec, stdin=in_r, stdout=out_w, stderr=err_w, seccomp_cache=cache,
                                  console_socket=console)
        except Exception as e:
            _report(rep_w, SpawnReply(error=str(e) or e.__class__.__name__))
            os._exit(0)
        for fd in (in_r, out_w, err_w):
            os.close(fd)
        _report(rep_w, SpawnReply(pid=init.pid))
        cmd = os.read(ctl_r, 16)
        if cmd.startswith(b"start"):
            try:
                init.start()
                _report(rep_w, Reply(ok=True))
            except runtime.ExecFailed as e:
                _report(rep_w, Reply(error=str(e)))
        else:
            init.abort()
    except BaseException:
        traceback.print_exc()
        code = 1
    os._exit(code)


def external(req: SpawnRequest) -> OCIRuntime | None:
    """The external OCI runtime ``req`` names (None: berth's own)."""
    if not req.runtime_path:
        return None
    from berth.runtime.external import OCIRuntime
    return OCIRuntime(path=req.runtime_path, root=req.runtime_root, args=list(req.runtime_args))


def _external_setup(req: SpawnRequest, in_r: int, out_w: int, err_w: int, rep_w: int, ctl_r: int,
                    console: int | None) -> None:
    """The setup child with runc or crun: ``create``, report the init's pid (``state``), then
    ``start`` on "start", or ``delete`` (which kills the waiting init) on abort."""
    rt = external(req)
    assert rt is not None
    con = socket.socket(fileno=console) if console is not None else None
    try:
        pid = rt.create(req.id, req.bundle, (in_r, out_w, err_w), con)
    except Exception as e:
        _report(rep_w, SpawnReply(error=str(e) or e.__class__.__name__))
        _forget(rt, req.id)
        return
    for fd in (in_r, out_w, err_w):
        os.close(fd)
    _report(rep_w, SpawnReply(pid=pid))
    cmd = os.read(ctl_r, 16)
    if not cmd.startswith(b"start"):
        _forget(rt, req.id)
        return
    try:
        rt.start(req.id)
        _report(rep_w, Reply(ok=True))
    except Exception as e:
        _report(rep_w, Reply(error=str(e) or e.__class__.__name__))


def _forget(rt: OCIRuntime, cid: str) -> None:
    try:
        rt.delete(cid)
    except Exception as e:
        print(f"berth-shim: {cid}: delete: {e}", file=sys.stderr)


# -- an exec's process, right after the shim forked it ----------------------------------------


def exec_plan(ctx: ExecContext, req: protocol.Exec, keep: tuple[int, ...]) -> Plan:
    """In the exec's child (``execproc.spawn_exec``): let go of the shim's fds and signal
    wiring (a host serves other containers; its wake-up pipe and SIGCHLD handler are not
    ours), then plan the process (``ctx``, inherited: from the fields planned once, or from
    the container's spec). The Python work happens here, after the fork, so it never becomes
    the shim's private memory."""
    close_all_but(0, 1, 2, *keep)
    signal.set_wakeup_fd(-1)
    _signal.signal(_SIGCHLD, _SIG_DFL)  # the C function: signal.signal's enum conversions fault pages in
    return ctx.exec_plan(args=list(req.args), env=list(req.env), cwd=req.cwd, user=req.user, tty=req.tty,
                         privileged=req.privileged)


# -- the exec helper of runc and crun --------------------------------------------------------


def external_exec_child(req: SpawnRequest, ex: protocol.Exec, in_r: int, out_w: int, err_w: int,
                        rep_w: int, console: int | None) -> None:
    """The exec child with runc or crun: the process as berth's own runtime would run it
    (``exec_spec``; a named user resolved in the rootfs the engine mounted), then
    ``exec -d``; report its pid (reparented to the shim when the runtime exits) and exit."""
    code = 0
    try:
        signal.set_wakeup_fd(-1)
        from berth.runtime.external import resolve_process
        rt = external(req)
        assert rt is not None
        with open(os.path.join(req.bundle, "config.json"), "rb") as f:
            base = decode_spec(f.read())
        try:
            spec = exec_spec(base, args=list(ex.args), env=list(ex.env), cwd=ex.cwd, user=ex.user,
                             tty=ex.tty, privileged=ex.privileged)
            assert spec.process is not None and spec.root is not None
            process = resolve_process(spec.process, spec.root.path, dict(spec.annotations or {}))
            con = socket.socket(fileno=console) if console is not None else None
            pid = rt.exec(req.id, process, (in_r, out_w, err_w), con)
        except Exception as e:
            _report(rep_w, ExecReply(error=str(e) or e.__class__.__name__, exit_code=126))
            os._exit(0)
        _report(rep_w, ExecReply(pid=pid))
    except BaseException:
        traceback.print_exc()
        code = 1
    os._exit(code)


# -- the gzip child -------------------------------------------------------------------------


def gzip_child(src: str) -> None:
    """In a forked child of the shim: src -> src.gz (atomically), then remove src; exit."""
    code = 0
    try:
        close_all_but(2)
        signal.set_wakeup_fd(-1)
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
