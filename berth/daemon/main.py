"""berthd: flags, the data-root lock, listening, start-up and shutdown, signals.

Start-up is on a budget (/_ping must answer well under 100 ms after exec). berthd listens
first, with only /_ping routed (``api.ping``); the engine's modules are imported in a thread
meanwhile (``daemon.wiring``, the one place objects are constructed), then the objects are
wired and the containers recovered, and only then are other requests served
(``Server.ready``): they wait, so none sees a half-recovered state. The fork server warms up
the runtime in the background. What this module imports is what listening needs
(docs/design-notes.md, "Lazy imports").
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import grp
import importlib
import logging
import os
import resource
import signal
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import berth
from berth.api.conns import Limits
from berth.api.http import Request, Response, Router, Server
from berth.api.ping import API_VERSION, HEADERS, MIN_API_VERSION, early_router, instant
from berth.daemon import remote, rootless, settings
from berth.daemon.config import load
from berth.daemon.config_values import ConfigError
from berth.state.paths import DataRoot, ExecRoot

if TYPE_CHECKING:  # imported in a thread while /_ping already answers (serve)
    from berth.api.app import App

T0 = time.perf_counter()  # as near the exec as berthd can measure
log = logging.getLogger("berthd")

DEFAULT_HOST = "unix:///run/berth/berth.sock"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The flags and daemon.json merged (``daemon.config``); a bad configuration ends berthd.
    A rootless berthd (``daemon.rootless``) has its own defaults and daemon.json."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        if rootless.wanted(argv) or rootless.inside():
            if {"-h", "--help", "-v", "--version"} & set(argv):
                return load(argv)   # needs no $XDG_RUNTIME_DIR
            paths = rootless.Paths.from_env()
            return load(argv, rootless.defaults(paths), str(paths.config_file))
        return load(argv)
    except (ConfigError, rootless.RootlessError) as e:
        raise SystemExit(f"berthd: {e}") from None


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


def _early_server() -> Server:
    """A server that answers /_ping now and holds every other request until ``ready``."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]  # stdlib: ctypes is not on this path
    return Server(Router(), HEADERS, _error_response, (MIN_API_VERSION, API_VERSION), early=early_router(),
                  limits=Limits.for_fds(nofile), instant=instant)


def _error_response(req: Request | None, e: BaseException) -> Response:
    from berth.api.errors import error_response  # msgspec and the error kinds: not needed to listen
    return error_response(req, e)


class _Reload:
    """SIGHUP: reloads daemon.json into the wired objects; one that comes while berthd still
    imports and wires is applied once the objects exist."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.app: App | None = None
        self.pending = False

    def __call__(self) -> None:
        if self.app is None:
            self.pending = True
            return
        settings.reload(self.args, self.app)

    def wired(self, app: App) -> None:
        self.app = app
        if self.pending:
            self.pending = False
            settings.reload(self.args, app)


def _bind_metrics(addr: str) -> socket.socket:
    """``metrics-addr``'s listening socket, bound before the API answers: a busy address stops
    berthd at start, as dockerd does."""
    host, _, port = addr.rpartition(":")
    try:
        return socket.create_server((host.strip("[]") or "127.0.0.1", int(port)), backlog=128)
    except (OSError, ValueError) as e:
        reason = os.strerror(e.errno) if isinstance(e, OSError) and e.errno else str(e)
        raise SystemExit(f"berthd: failed to listen on metrics-addr {addr}: {reason}") from None


async def _serve_metrics(sock: socket.socket, app: App, server: Server) -> Server:
    """Prometheus text on the metrics socket; the API's routes are counted."""
    from berth.api import metrics  # only with metrics-addr
    from berth.daemon import wiring

    api_metrics = metrics.ApiMetrics()
    wiring.add_routes(server.router, app, api_metrics.wrap)
    metrics_server = metrics.server(app, api_metrics)
    await metrics_server.serve_socket(sock)
    return metrics_server


async def serve(args: argparse.Namespace) -> None:
    hosts = args.hosts or [DEFAULT_HOST]
    listeners = remote.prepare(hosts, args)  # before any state: a bad -H or TLS flag stops here
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
    server = _early_server()
    try:
        gid = grp.getgrnam(args.group).gr_gid
    except KeyError:
        gid = -1
    sockets = await remote.listen(server, listeners, gid, dir_owner=bool(args.rootless))
    # Handlers first: a SIGTERM while recovery still runs (the socket already answers) must
    # still end in the orderly shutdown below, or bridges and rules stay behind.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    reload = _Reload(args)
    loop.add_signal_handler(signal.SIGHUP, reload)
    t = [time.perf_counter()]
    await asyncio.to_thread(importlib.import_module, "berth.daemon.wiring")
    from berth.daemon import wiring  # imported just above, off the event loop
    t.append(time.perf_counter())
    try:
        d = wiring.wire(args)
    except ConfigError as e:
        raise SystemExit(f"berthd: {e}") from None
    app = d.app
    reload.wired(app)
    # The build containers a dead berthd left: named before any other request is served, so
    # the sweep below never touches a build that a client starts meanwhile.
    stale_builds = wiring.build_containers(app.containers)
    metrics_server = await _serve_metrics(metrics_sock, app, server) if metrics_sock is not None else None
    if metrics_server is None:
        wiring.add_routes(server.router, app)
    d.forkserver.start()
    t.append(time.perf_counter())
    await _recover(app, wiring, stale_builds)
    server.ready.set()
    t.append(time.perf_counter())
    log.debug("start-up: listening at %.0f ms; imports %.0f ms, wiring %.0f ms, recovery %.0f ms",
              (t[0] - T0) * 1000, *((b - a) * 1000 for a, b in zip(t, t[1:])))
    log.info("berthd is up: %s", ", ".join(hosts))
    remote.notify_ready()
    cri = asyncio.ensure_future(_start_cri(args, app, exec_root))
    await stop.wait()
    await _stop_cri(cri)
    await server.close()
    if metrics_server is not None:
        await metrics_server.close()
    if app.live_restore:
        log.info("shutting down (containers keep running)")
    else:
        log.info("shutting down: stopping the containers (live restore is off)")
        await _stop_containers(app, args.shutdown_timeout)
    await d.forkserver.stop()
    # With no container running, bridges and rules go (recreated at start); else they stay.
    await app.attachments.shutdown(list(app.containers.by_id.values()))
    for p in sockets:
        p.unlink(missing_ok=True)
    if args.pidfile:
        Path(args.pidfile).unlink(missing_ok=True)
    app.containers.flush_unsaved()  # records a full disk held back, if there is room now
    d.db.close()
    os.close(lock_fd)


async def _recover(app: App, wiring: Any, stale_builds: Any) -> None:
    """Live restore and the start-up sweeps. A failure there (out of descriptors, a full
    disk) is logged, not fatal: the socket already answers, and a berthd that exits at every
    start is worse than one whose recovery is incomplete."""
    try:
        await app.containers.recover()
        await wiring.sweep_builds(app.containers, stale_builds, app.builder.cache.kept_containers)
    except Exception:
        log.exception("start-up recovery is incomplete")


async def _start_cri(args: argparse.Namespace, app: App, exec_root: ExecRoot) -> Any:
    """The CRI server (berth/cri/), when on and its extra is installed. grpc is imported in a
    thread once the Docker API answers: berthd's cold start does not pay for it."""
    if not args.cri:
        return None
    try:
        cri = await asyncio.to_thread(importlib.import_module, "berth.cri.server")
    except ImportError as e:
        log.info("CRI off: the cri extra is not installed (%s)", e)
        return None
    sock = Path(args.cri_socket) if args.cri_socket else exec_root.cri_socket
    driver = "systemd" if "native.cgroupdriver=systemd" in (args.exec_opts or []) else "cgroupfs"
    from berth.engine.pod_networks import PodNetworks
    from berth.network.cni import Cni

    cni = Cni(args.cni_conf_dir, [d for d in args.cni_bin_dir.split(":") if d], DataRoot(app.root).cni_results)
    engine = cri.Engine(app.containers, app.images, app.distribution, app.execs, str(app.root), app.events, driver,
                        args.cri_stream_address, PodNetworks(cni), args.cri_stream_creation_timeout)
    try:
        server = await cri.start(sock, engine)
    except (OSError, RuntimeError) as e:
        log.error("CRI off: cannot serve on %s: %s", sock, e)
        return None
    log.info("CRI (Kubernetes runtime v1) on unix://%s", sock)
    return server


async def _stop_cri(task: asyncio.Future[Any]) -> None:
    if not task.done():
        task.cancel()
        return
    server = task.result()
    if server is not None:
        await server.stop(1)


async def _stop_containers(app: App, timeout: int) -> None:
    """Stop the containers, waiting as dockerd does (``Containers.shutdown_wait``)."""
    wait = app.containers.shutdown_wait(timeout)
    task = asyncio.ensure_future(app.containers.shutdown())
    done, _ = await asyncio.wait([task], timeout=wait)
    if not done:
        log.error("force shutdown: containers still stopping after %s s", wait)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.version:
        print(f"berthd version {berth.__version__}")
        return
    logging.basicConfig(level=settings.log_level(args), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    argv = sys.argv[1:] if argv is None else argv
    if rootless.wanted(argv):
        from berth.daemon import rootless_boot  # only a rootless start needs it
        try:
            raise SystemExit(rootless_boot.start(argv))
        except (rootless.RootlessError, OSError) as e:
            raise SystemExit(f"berthd: {e}") from None
    if os.geteuid() != 0:
        raise SystemExit("berthd: must run as root")
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
