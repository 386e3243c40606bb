"""The exit watch (``shims.wait_exit``) when berthd is out of descriptors: the connect to the
shim fails with EMFILE, and the watch must try again rather than end, or the exit is never
recorded (the container stays "running" with its process gone; the faults suite's
ulimit -n 256 test found it as a stop's "did not receive an exit event" and a ``run --rm``
that never returned).

The shim is a stand-in on a real Unix socket (a thread of this process) answering Wait with an
exit status; the watch runs in a child process whose descriptor table is full until 0.3 s
after the watch began."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from berth.runtime.shim import protocol
from berth.runtime.shim.protocol import ExitStatus

CHILD = textwrap.dedent("""
    import asyncio, os, resource, sys
    from pathlib import Path
    from berth.engine import shims

    async def main() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 8, 4096))
        filler = []
        try:
            while True:
                filler.append(os.open("/dev/null", os.O_RDONLY))
        except OSError:
            pass
        watch = asyncio.ensure_future(shims.wait_exit(Path(sys.argv[1])))
        await asyncio.sleep(0.3)
        assert not watch.done(), watch
        for fd in filler:
            os.close(fd)
        status = await asyncio.wait_for(watch, 5)
        print("exit", status.exit_code if status else None)
    asyncio.run(main())
""")


def _shim(listener: socket.socket) -> None:
    conn, _ = listener.accept()
    with conn:
        conn.makefile("rb").readline()  # Wait
        conn.sendall(protocol.encode(ExitStatus(exit_code=3)))


def test_the_exit_watch_outlasts_a_full_descriptor_table(tmp_path: Path) -> None:
    path = tmp_path / "shim.sock"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
        listener.listen(1)
        listener.settimeout(30)
        shim = threading.Thread(target=_shim, args=(listener,), daemon=True)
        shim.start()
        r = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, timeout=30,
                           cwd=Path(__file__).resolve().parents[2])
        shim.join(5)
    assert r.returncode == 0 and r.stdout == "exit 3\n", r.stdout + r.stderr
    assert "too many open files; trying again" in r.stderr
