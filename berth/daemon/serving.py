"""berthd's event loop: the HTTP server takes the listeners from ``main``'s early /_ping thread,
the engine is imported and wired, the containers recovered, requests served; then the orderly
shutdown.

The loop's server answers /_ping from the moment it takes over; the engine's modules are
imported in a worker thread meanwhile (``daemon.wiring``), then the objects are wired and the
containers recovered, and only then are other requests served (``Server.ready``). The fork
server warms up the runtime in the background.
"""

from __future__ import annotations

import argparse
import asyncio
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

from berth.api.conns import Limits
from berth.api.http import Request, Response, Router, Server
from berth.api.ping import API_VERSION, HEADERS, MIN_API_VERSION, early_router, instant
from berth.daemon import remote, settings
from berth.daemon.config_values import ConfigError
from berth.state.paths import DataRoot, ExecRoot

if TYPE_CHECKING:  # imported in a thread while /_ping already answers (serve)
    from berth.api.app import App
    from berth.daemon.prelisten import Started

log = logging.getLogger("berthd")

def run(args: argparse.Namespace, started: Started, t0: float) -> None:
    """Serve until SIGTERM or SIGINT."""
    try:
        asyncio.run(serve(args, started, t0))
    except KeyboardInterrupt:
        pass


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


async def _serve_metrics(sock: socket.socket, app: App, server: Server) -> Server:
    """Prometheus text on the metrics socket; the API's routes are counted."""
    from berth.api import metrics  # only with metrics-addr
    from berth.daemon import wiring

    api_metrics = metrics.ApiMetrics()
    wiring.add_routes(server.router, app, api_metrics.wrap)
    metrics_server = metrics.server(app, api_metrics)
    await metrics_server.serve_socket(sock)
    return metrics_server


async def serve(args: argparse.Namespace, started: Started, t0: float) -> None:
    server = _early_server()
    held = started.responder.handover()  # the listening sockets' backlog is the loop's from here
    await remote.listen(server, started.plan, started.bound)
    for h in held:
        await server.adopt(h)
    sys.setswitchinterval(started.switch)
    log.debug("start-up: bound at %.0f ms (%.0f ms of CPU), the loop's at %.0f ms; %d /_ping answered before "
              "the loop, %d connections handed over", (started.bound_at - t0) * 1000, started.bound_cpu * 1000,
              (time.perf_counter() - t0) * 1000, started.responder.answered, len(held))
    # Handlers first: a SIGTERM while recovery still runs (the socket already answers) must
    # still end in the orderly shutdown below, or bridges and rules stay behind.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    reload = _Reload(args)
    loop.add_signal_handler(signal.SIGHUP, reload)
    for signum in started.signals:  # those that came before the loop's handlers
        if signum == signal.SIGHUP:
            reload()
        else:
            stop.set()
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
    metrics_sock = started.metrics_sock
    metrics_server = await _serve_metrics(metrics_sock, app, server) if metrics_sock is not None else None
    if metrics_server is None:
        wiring.add_routes(server.router, app)
    d.forkserver.start()
    t.append(time.perf_counter())
    await _recover(app, wiring, stale_builds)
    server.ready.set()
    t.append(time.perf_counter())
    log.debug("start-up: listening at %.0f ms; imports %.0f ms, wiring %.0f ms, recovery %.0f ms",
              (t[0] - t0) * 1000, *((b - a) * 1000 for a, b in zip(t, t[1:])))
    log.info("berthd is up: %s", ", ".join(started.hosts))
    remote.notify_ready()
    cri = asyncio.ensure_future(_start_cri(args, app, started.exec_root))
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
    for p in started.bound.paths:
        p.unlink(missing_ok=True)
    if args.pidfile:
        Path(args.pidfile).unlink(missing_ok=True)
    app.containers.flush_unsaved()  # records a full disk held back, if there is room now
    d.db.close()
    os.close(started.lock_fd)


async def _recover(app: App, wiring: Any, stale_builds: Any) -> None:
    """Live restore and the start-up sweeps. A failure there (out of descriptors, a full
    disk) is logged, not fatal: the socket already answers, and a berthd that exits at every
    start is worse than one whose recovery is incomplete."""
    try:
        await app.containers.recover(app.live_restore)
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


