"""Network namespaces by path (``/proc/<pid>/ns/net``) and network sysctls.

A thread's network namespace is its own (setns(2) with CLONE_NEWNET affects only the calling
thread), and a socket stays in the namespace it was created in. So ``run_in_netns`` runs a
function in a throwaway thread that first joins the target namespace: netlink sockets made
there configure that namespace, and listening sockets made there serve it, while the rest of
berthd (and the asyncio loop) never changes namespace.
"""

from __future__ import annotations

import os
import threading
from typing import Callable, TypeVar

from berth.linux.net import set_link_up
from berth.linux.sched import CloneFlags, setns, unshare

T = TypeVar("T")


def pid_netns(pid: int) -> str:
    return f"/proc/{pid}/ns/net"


def run_in_netns(path: str, fn: Callable[[], T]) -> T:
    """``fn()`` in a fresh thread that has joined the network namespace at ``path``.

    Raises:
        OSError: the namespace cannot be opened or joined; or whatever ``fn`` raised.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    box: dict[str, object] = {}

    def body() -> None:
        try:
            setns(fd, CloneFlags.NEWNET)
            box["result"] = fn()
        except BaseException as e:  # handed back to the caller below
            box["error"] = e

    try:
        t = threading.Thread(target=body, name="netns", daemon=True)
        t.start()
        t.join()
    finally:
        os.close(fd)
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["result"]  # type: ignore[return-value]


def same_netns(a: str, b: str) -> bool:
    sa, sb = os.stat(a), os.stat(b)
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def write_sysctl(key: str, value: str, root: str = "/proc/sys") -> None:
    """``net.ipv4.ip_forward`` -> /proc/sys/net/ipv4/ip_forward (dots in interface names are
    not supported: berth's own names have none)."""
    path = os.path.join(root, *key.split("."))
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def read_sysctl(key: str, root: str = "/proc/sys") -> str:
    with open(os.path.join(root, *key.split("."))) as f:
        return f.read().strip()


def new_netns() -> int:
    """A new network namespace with ``lo`` up, held by the returned fd (O_CLOEXEC) and by
    nothing else: closing the fd frees it unless a process joined it meanwhile (through
    ``/proc/<pid>/fd/<fd>``)."""
    return new_netns_with(lambda: None)[0]


def new_netns_with(fn: Callable[[], T]) -> tuple[int, T]:
    """``new_netns``, and ``fn()`` called inside it by the thread that made it (a socket it
    opens stays in that namespace) -> (fd, what ``fn`` returned)."""

    box: dict[str, object] = {}

    def body() -> None:
        try:
            unshare(CloneFlags.NEWNET)
            set_link_up("lo")
            fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                box["result"] = fd, fn()
            except BaseException:
                os.close(fd)
                raise
        except BaseException as e:  # handed back to the caller below
            box["error"] = e

    t = threading.Thread(target=body, name="netns-new", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["result"]  # type: ignore[return-value]
