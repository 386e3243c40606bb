"""What berthd does before its event loop: the roots made and locked, the listeners bound, and
/_ping answered on the Unix sockets from a thread (``api.early``) until the loop's server
takes them over (``daemon.serving``).

No asyncio, ssl or dataclasses here, nor in what this module imports: the thread answers while the
main thread imports them (docs/performance.md, "Daemon start").
"""

from __future__ import annotations

import argparse
import fcntl
import grp
import os
import signal
import socket
import sys
import time
from pathlib import Path

from berth.api import early
from berth.api.ping import API_VERSION, HEADERS, MIN_API_VERSION, instant
from berth.api.response import render
from berth.daemon import remote
from berth.state.paths import DataRoot, ExecRoot

DEFAULT_HOST = "unix:///run/berth/berth.sock"
EARLY_SWITCH = 0.0005  # s: the GIL's switch interval while the early thread answers (default 5 ms)


def _lock(data: DataRoot) -> int:
    fd = os.open(data.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise SystemExit(f"berthd: data root {data.root} is in use by another berthd (lock {data.lock} is held)")
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _bind_metrics(addr: str) -> socket.socket:
    """``metrics-addr``'s listening socket, bound before the API answers: a busy address stops
    berthd at start, as dockerd does."""
    host, _, port = addr.rpartition(":")
    try:
        return socket.create_server((host.strip("[]") or "127.0.0.1", int(port)), backlog=128)
    except (OSError, ValueError) as e:
        reason = os.strerror(e.errno) if isinstance(e, OSError) and e.errno else str(e)
        raise SystemExit(f"berthd: failed to listen on metrics-addr {addr}: {reason}") from None


class Started:
    """What berthd holds when the event loop starts: its roots and lock, the listeners, the
    early /_ping thread, and the signals that came before the loop's handlers."""

    def __init__(self, hosts: list[str], plan: remote.Plan, bound: remote.Bound, roots: tuple[DataRoot, ExecRoot],
                 lock_fd: int, metrics_sock: socket.socket | None, responder: early.Responder, signals: list[int]):
        self.hosts = hosts
        self.plan = plan
        self.bound = bound
        self.data, self.exec_root = roots
        self.lock_fd = lock_fd
        self.metrics_sock = metrics_sock
        self.responder = responder
        self.signals = signals  # by the handlers set before the bind
        self.switch = sys.getswitchinterval()  # the GIL's, restored once the loop serves
        self.bound_at = time.perf_counter()  # for the start-up log line
        self.bound_cpu = time.process_time()


def _answer(head: bytes) -> tuple[bytes, bool] | None:
    return early.respond(head, instant, (MIN_API_VERSION, API_VERSION),
                         lambda resp, method, keep: render(HEADERS, resp, method, keep))


def listen_early(args: argparse.Namespace) -> Started:
    """Everything before the loop: the listeners checked, the roots made and locked, the Unix
    sockets bound and /_ping answered on them from a thread."""
    hosts = args.hosts or [DEFAULT_HOST]
    plan = remote.prepare(hosts, args)  # before any state: a bad -H or TLS flag stops here
    data = DataRoot(Path(args.data_root))
    exec_root = ExecRoot(Path(args.exec_root))
    data.root.mkdir(parents=True, exist_ok=True)
    data.make()
    exec_root.root.mkdir(parents=True, exist_ok=True)
    exec_root.make()
    if args.rootless:   # before the fork server: its shims inherit the choice
        from berth.daemon import rootless_storage
        try:
            rootless_storage.choose(exec_root.root)
        except rootless_storage.StorageError as e:
            raise SystemExit(f"berthd: {e}") from None
    lock_fd = _lock(data)
    if args.pidfile:
        Path(args.pidfile).write_text(f"{os.getpid()}\n")
    metrics_sock = _bind_metrics(args.metrics_addr) if args.metrics_addr else None
    try:
        gid = grp.getgrnam(args.group).gr_gid
    except KeyError:
        gid = -1
    signals: list[int] = []
    # From the bind until the loop's handlers: a SIGTERM must still end in the orderly
    # shutdown (the socket answers), and a SIGHUP must not end berthd (its default action).
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, lambda signum, frame: signals.append(signum))
    bound = remote.bind(plan, gid, dir_owner=bool(args.rootless))
    started = Started(hosts, plan, bound, (data, exec_root), lock_fd, metrics_sock,
                      early.Responder(bound.unix(), _answer), signals)
    sys.setswitchinterval(EARLY_SWITCH)  # the thread answers within this while imports run
    started.responder.start()
    return started
