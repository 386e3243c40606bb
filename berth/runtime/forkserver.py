"""The fork server: a small child of berthd that forks shims on request (DESIGN.md §1).

berthd runs an event loop and threads, so it never forks. This process is started once with
``python -m berth.runtime.forkserver SOCKET``, imports the runtime up front, and for each
request forks once: the child becomes the shim. When berthd dies this process dies with it
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

import msgspec

from berth.linux import prctl
from berth.runtime.shim import protocol
from berth.runtime.shim.protocol import SpawnReply, SpawnRequest


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
    except ImportError:
        pass


def _set_pdeathsig() -> None:
    prctl.set_pdeathsig(9)
    prctl.set_name("berth-forkserver")


def _serve_one(conn: socket.socket, listener: socket.socket) -> None:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            conn.close()
            return
        data += chunk
    try:
        req = protocol.decode(data, SpawnRequest)
    except msgspec.DecodeError as e:
        conn.sendall(protocol.encode(SpawnReply(error=f"bad spawn request: {e}")))
        conn.close()
        return
    pid = os.fork()
    if pid == 0:
        try:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            listener.close()
            _become_shim(req, conn)
        finally:
            os._exit(1)
    conn.close()


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


def _become_shim(req: SpawnRequest, conn: socket.socket) -> None:
    from berth.runtime.shim import main as shim
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    log = os.open(os.path.join(req.bundle, "shim.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    os.dup2(log, 2)
    os.close(null)
    os.close(log)
    os.closerange(3, conn.fileno())
    os.closerange(conn.fileno() + 1, 4096)
    shim.main(req, conn)


def main() -> None:
    path = sys.argv[1]
    _set_pdeathsig()
    if os.getppid() == 1:
        return
    _preload()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    listener.bind(path)
    listener.listen(128)
    signal.signal(signal.SIGCHLD, _reap)
    gc.collect()
    gc.freeze()  # keep the preloaded heap shared with the shims: no GC writes to it
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
