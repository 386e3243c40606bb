"""The fork server: a small child of berthd that forks shims on request (DESIGN.md §1).

berthd runs an event loop and threads, so it never forks. This process is started once with
``python -m berth.runtime.forkserver SOCKET``, imports the runtime up front, and for each
request either hands it to the open group's shim host or to the spare: a host forked ahead,
which becomes the host of a new group (``shim.host``) with its first request, so no fork is on
the start's path; another spare is forked right after it is taken (at most one idles). When berthd dies this process dies with it
(PR_SET_PDEATHSIG) and the shims are reparented, still running: containers outlive berthd.
Forking a warm process is what keeps container start fast, and the shims share its pages
copy-on-write.
"""

from __future__ import annotations

import gc
import os
import signal
import socket
import sys
from pathlib import Path

import msgspec

from berth.linux import prctl
from berth.runtime.shim import protocol
from berth.runtime.shim.protocol import SpawnReply, SpawnRequest
from berth.state.sockaddr import address

# Containers one shim process (a host) serves: a forked shim's memory is mostly what any forked
# interpreter dirties, so a group shares it (docs/performance.md, "Shim memory"); a crash of a
# host ends its group's shims only. 1: a shim process per container.
GROUP = max(1, int(os.environ.get("BERTH_SHIM_GROUP", "8")))
SPARE = os.environ.get("BERTH_SHIM_SPARE", "1") != "0"  # keep a host forked ahead (_Spare)
_ACK_TIMEOUT = 30.0  # a host takes a request when it is between two of its containers' setups


class _OpenGroup:
    """The host that still takes containers: its end of the join socket, how many it took."""

    sock: socket.socket | None = None
    taken = 0

    @classmethod
    def hand_over(cls, data: bytes, conn: socket.socket) -> bool | None:
        """Give the request to the open group's host: True when it took it, False when there
        is none (or it is gone: fork another), None when it did not answer in time (berthd
        is told; should the host take it late, berthd's hang-up makes it abort the init)."""
        sock = cls.sock
        if sock is None:
            return False
        try:
            socket.send_fds(sock, [data], [conn.fileno()])
            sock.settimeout(_ACK_TIMEOUT)
            taken: bool | None = sock.recv(1) == b"+"
        except TimeoutError:
            taken = None
        except OSError:
            taken = False
        cls.taken += taken is True
        if not taken or cls.taken >= GROUP:
            cls.close()
        return taken

    @classmethod
    def opened(cls, sock: socket.socket) -> None:
        cls.close()
        cls.sock, cls.taken = sock, 1
        if GROUP <= 1:
            cls.close()

    @classmethod
    def close(cls) -> None:
        """No more containers for this host: it exits after its last one."""
        if cls.sock is not None:
            cls.sock.close()
            cls.sock = None

    @classmethod
    def forget(cls) -> None:
        """In a child: the open group's socket is the fork server's (a new host must not keep
        its sibling's join socket open: that host would never see its group closed)."""
        cls.close()


def _preload() -> None:
    # Everything a shim and the container init need, imported once here.
    import berth.runtime.container  # noqa: F401  (the package itself is lazy)
    import berth.runtime.init  # noqa: F401
    import berth.runtime.shim.main  # noqa: F401
    import berth.oci.spec  # noqa: F401
    import json, select, signal, time  # noqa: F401,E401
    try:
        import berth.runtime.seccomp  # noqa: F401
        import berth.runtime.cgroups  # noqa: F401
        # detect() picks one of these per host: imported after the fork, each helper and
        # each shim (at the container's exit) would pay for it again.
        import berth.runtime.cgroups.v1  # noqa: F401
        import berth.runtime.cgroups.v2  # noqa: F401
    except ImportError:
        pass


def _warm(seccomp_cache: str) -> None:
    """Work every setup helper would repeat, done once here and inherited by each shim host
    and its helpers: the host facts (1.2 ms per helper), the cgroup layout (read again by
    each helper and by each shim at its container's exit), and Docker's default seccomp
    program for the default capabilities (0.9 ms: the cache key and the file read), from
    berthd's cache (``seccomp_cache``; "": compiled here, ≈24 ms). A failure only loses the
    head start."""
    from berth.runtime import cgroups, defaults, host, seccomp  # as _preload's: at this moment
    try:
        host.host_info()
        cgroups.detect()
        profile = defaults.default_seccomp()
        if profile is not None:
            seccomp.compile(profile, Path(seccomp_cache) if seccomp_cache else None)
    except Exception as e:  # the helpers work it out themselves, as before
        print(f"berth-forkserver: warm-up: {e}", file=sys.stderr)


def _set_pdeathsig() -> None:
    prctl.set_pdeathsig(9)
    prctl.set_name("berth-forkserver")


def _request_line(conn: socket.socket) -> bytes:
    """The SpawnRequest line, and not a byte more: berthd may send Start right behind it,
    which is the shim's to read (b"" when berthd hung up first)."""
    data = b""
    while True:
        peek = conn.recv(65536, socket.MSG_PEEK)
        if not peek:
            return b""
        end = peek.find(b"\n")
        data += conn.recv(end + 1 if end >= 0 else len(peek))
        if end >= 0:
            return data


def _serve_one(conn: socket.socket, listener: socket.socket) -> None:
    data = _request_line(conn)
    if not data:
        conn.close()
        return
    try:
        req = protocol.decode(data, SpawnRequest)
    except msgspec.DecodeError as e:
        conn.sendall(protocol.encode(SpawnReply(error=f"bad spawn request: {e}")))
        conn.close()
        return
    taken = _OpenGroup.hand_over(data, conn)
    if taken is False:
        taken = _Spare.hand_over(data, conn)
    if taken is None:
        conn.sendall(protocol.encode(SpawnReply(error="shim host did not answer")))
    if taken is not False:
        conn.close()
        _Spare.refill(listener)
        return
    join, join_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:
        try:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            listener.close()
            _Spare.forget()
            _become_shim(req, conn, join_child)
        finally:
            os._exit(1)
    conn.close()
    join_child.close()
    _OpenGroup.opened(join)
    _Spare.refill(listener)


class _Spare:
    """A shim host forked ahead, blocked before its first request (``_wait_first``): the fork
    and the after-fork work of a new host (≈1.5 ms of the fork server, the child's
    copy-on-write faults) leave the start's path. One at most; it exits when its socket
    hangs up (this process closed it, or died: it goes with berthd)."""

    sock: socket.socket | None = None

    @classmethod
    def hand_over(cls, data: bytes, conn: socket.socket) -> bool | None:
        """The request to the spare, which becomes the open group's host (as hand_over)."""
        sock, cls.sock = cls.sock, None
        if sock is None:
            return False
        _OpenGroup.close()
        _OpenGroup.sock, _OpenGroup.taken = sock, 0
        return _OpenGroup.hand_over(data, conn)

    @classmethod
    def refill(cls, listener: socket.socket) -> None:
        if cls.sock is not None or not SPARE:
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            pid = os.fork()
        except OSError:
            ours.close()
            theirs.close()
            return
        if pid == 0:
            try:
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                listener.close()
                ours.close()
                _OpenGroup.forget()
                _wait_first(theirs)
            finally:
                os._exit(1)
        theirs.close()
        cls.sock = ours

    @classmethod
    def forget(cls) -> None:
        """In a child: the spare's socket is the fork server's, not ours."""
        if cls.sock is not None:
            cls.sock.close()
            cls.sock = None


def _reap(*_: object) -> None:
    """Shims are our children (one fork, not two: forks of a warm interpreter cost ms here);
    reap them as they exit. When we die with berthd they are reparented, still running."""
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _become_shim(req: SpawnRequest, conn: socket.socket, join: socket.socket) -> None:
    _detach(conn.fileno(), join.fileno())
    _shim_log(req)
    from berth.runtime.shim import main as shim
    shim.main(req, conn, join)


def _detach(*keep: int) -> None:
    """A new host's start: stdin and stdout to /dev/null, no fd of the fork server's but ``keep``."""
    from berth.runtime.shim.helper import close_all_but
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.dup2(null, 2)
    os.close(null)
    close_all_but(0, 1, 2, *keep)


def _shim_log(req: SpawnRequest) -> None:
    """stderr to the first container's shim.log (the host's log)."""
    log = os.open(os.path.join(req.bundle, "shim.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    os.dup2(log, 2)
    os.close(log)


def _wait_first(join: socket.socket) -> None:
    """The spare: ready as a new host but for the request, which comes on ``join`` as the
    open group's next ones do (``Host._joined``); EOF: not needed any more (exit)."""
    from berth.runtime.shim import main as shim
    from berth.runtime.shim.host import TAKEN
    _detach(join.fileno())
    try:
        line, fds, _, _ = socket.recv_fds(join, 1 << 16, 1)
    except OSError:
        line, fds = b"", []
    if not line or not fds:
        os._exit(0)
    os.set_inheritable(fds[0], False)
    conn = socket.socket(fileno=fds[0])
    try:
        req = protocol.decode(line, SpawnRequest)
    except msgspec.DecodeError as e:  # checked by the fork server already
        conn.sendall(protocol.encode(SpawnReply(error=f"bad spawn request: {e}")))
        join.send(TAKEN)
        os._exit(1)
    join.send(TAKEN)
    _shim_log(req)
    shim.main(req, conn, join)


def main() -> None:
    path = sys.argv[1]
    _set_pdeathsig()
    if os.getppid() == 1:
        return
    _preload()
    _warm(sys.argv[2] if len(sys.argv) > 2 else "")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    with address(path) as name:
        listener.bind(name)
    listener.listen(128)
    signal.signal(signal.SIGCHLD, _reap)
    gc.collect()
    gc.freeze()  # keep the preloaded heap shared with the shims: no GC writes to it
    _Spare.refill(listener)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        conn, _ = listener.accept()
        try:
            _serve_one(conn, listener)
        except OSError:
            conn.close()


if __name__ == "__main__":
    main()
