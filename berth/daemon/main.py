"""berthd: flags, the data-root lock, wiring (the one place objects are constructed), signals.

Start-up is on a budget (/_ping must answer well under 150 ms after exec): what the API and
the engine need is imported here, and what only some requests need is imported lazily where it
is used (docs/design-notes.md, "Lazy imports"); the fork server warms up the runtime in the
background.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import grp
import logging
import os
import secrets
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import berth
from berth.daemon import settings
from berth.api import attach_ws, containers_io, jsonbody, system, system_df
from berth.api import build as build_api
from berth.api import commit as commit_api
from berth.api import containers as containers_api
from berth.api import events as events_api
from berth.api import exec as exec_api
from berth.api import images as images_api
from berth.api import links as links_api
from berth.api import networks as networks_api
from berth.api import swarm as swarm_api
from berth.api import volumes as volumes_api
from berth.api.app import App, register
from berth.api.errors import error_response
from berth.api.http import Router, Server
from berth.build.admin import BuildAdmin
from berth.build.builder import Builder
from berth.build.cache import BuildCache
from berth.engine import events
from berth.engine.archive import Archives
from berth.engine.attachments import Attachments
from berth.engine.build_support import build_containers
from berth.engine.build_support import sweep as sweep_builds
from berth.engine.containers import Containers
from berth.engine.distribution import Distribution
from berth.engine.exec import Execs
from berth.engine.health import HealthMonitor
from berth.engine.image_files import ImageFiles
from berth.engine.images import Images
from berth.engine.networks import Networks, instance_of
from berth.engine.shims import ForkServer
from berth.engine.volumes import Volumes
from berth.image.store import ImageStore
from berth.oci.spec import encode_spec
from berth.runtime.cgroups import detect
from berth.runtime.defaults import build_spec
from berth.state.atomic import write_atomic
from berth.state.db import Database
from berth.daemon import remote
from berth.state.paths import DataRoot, ExecRoot

log = logging.getLogger("berthd")

DEFAULT_HOST = "unix:///run/berth/berth.sock"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The flags and daemon.json merged (``daemon.config``); a bad configuration ends berthd."""
    from berth.daemon.config import ConfigError, load
    try:
        return load(argv)
    except ConfigError as e:
        raise SystemExit(f"berthd: {e}") from None


@dataclass
class Daemon:
    """What wire() built: the API's context, and what only the daemon itself drives."""

    app: App
    db: Database
    forkserver: ForkServer


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


def _daemon_id(data: DataRoot) -> str:
    p = data.root / "engine-id"
    try:
        return p.read_text().strip()
    except FileNotFoundError:
        i = secrets.token_hex(16)
        write_atomic(p, i.encode())
        return i


def wire(args: argparse.Namespace) -> Daemon:
    data = DataRoot(Path(args.data_root))
    exec_root = ExecRoot(Path(args.exec_root))
    db = Database(data.db)
    store = ImageStore(db, data)
    store.sweep()
    forkserver = ForkServer(exec_root.forkserver)
    containers = Containers(db, data, exec_root, store, forkserver, build_spec, encode_spec)
    containers.defaults = settings.container_defaults(args)
    containers.userns = settings.userns_settings(args, db)
    if containers.userns.pool is not None:
        containers.userns.pool.forget_except(set(containers.by_id))
    images = Images(store, containers, str(data.image_tmp))
    distribution = Distribution(store, settings.registry_options(args))
    bus = events.Events()
    containers.on_event = events.container_hook(bus)
    images.on_event = events.image_hook(bus)
    distribution.on_event = images.on_event
    execs = Execs(containers, events.exec_hook(bus, containers))
    health = HealthMonitor(containers, execs, events.exec_hook(bus, containers))
    networks = Networks(db, data.root, instance_of(data.root), bus.emit)
    settings.configure_networks(args, networks)
    volumes = Volumes(db, data.volumes, bus.emit)
    attachments = containers.attachments = Attachments(networks, volumes, data, containers)
    builder, build_admin = _wire_builder(db, store, containers, images, distribution, data, exec_root)
    app = App(root=data.root, daemon_id=_daemon_id(data), cgroup_version=_cgroup_version(),
              containers=containers, images=images, image_files=ImageFiles(images), distribution=distribution,
              events=bus, execs=execs, archives=Archives(containers), health=health, networks=networks,
              volumes=volumes, attachments=attachments, builder=builder, build_admin=build_admin,
              live_restore=args.live_restore, config=settings.daemon_info(args))
    app.config.security_options = list(containers.userns.uses)
    return Daemon(app, db, forkserver)


def _wire_builder(db: Database, store: ImageStore, containers: Containers, images: Images,
                  distribution: Distribution, data: DataRoot, exec_root: ExecRoot) -> tuple[Builder, BuildAdmin]:
    cache = BuildCache(db)
    pids = os.environ.get("BERTH_BUILD_PIDS_LIMIT")  # RUN steps' pids limit; 0 = none
    builder = Builder(containers, images, distribution, cache,
                      data.build_tmp, data.build_mounts, exec_root.root / "build",
                      **({"pids_limit": int(pids)} if pids else {}))
    builder.sweep()
    return builder, BuildAdmin(store, containers, cache)


def _cgroup_version() -> str:
    try:
        return str(detect().version)
    except Exception:
        return "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1"


def build_server(app: App) -> Server:
    router = Router()
    for table in (system.ROUTES, images_api.ROUTES, system_df.ROUTES, containers_api.ROUTES, containers_io.ROUTES,
                  attach_ws.ROUTES, commit_api.ROUTES, links_api.ROUTES, events_api.ROUTES, exec_api.ROUTES,
                  networks_api.ROUTES, volumes_api.ROUTES, build_api.ROUTES, swarm_api.ROUTES):
        register(router, app, table)
    jsonbody.guard(router)
    headers = {"Api-Version": system.API_VERSION, "Docker-Experimental": "false", "Ostype": "linux",
               "Server": f"{system.SERVER} (linux)"}
    return Server(router, headers, error_response, (system.MIN_API_VERSION, system.API_VERSION))


async def serve(args: argparse.Namespace) -> None:
    listeners = remote.prepare(args.hosts or [DEFAULT_HOST], args)
    data = DataRoot(Path(args.data_root))
    exec_root = ExecRoot(Path(args.exec_root))
    data.root.mkdir(parents=True, exist_ok=True)
    data.make()
    exec_root.root.mkdir(parents=True, exist_ok=True)
    exec_root.make()
    lock_fd = _lock(data)
    if args.pidfile:
        Path(args.pidfile).write_text(f"{os.getpid()}\n")
    from berth.daemon.config_values import ConfigError
    try:
        d = wire(args)
    except ConfigError as e:
        raise SystemExit(f"berthd: {e}") from None
    app = d.app
    server = build_server(app)
    # The build containers a dead berthd left: named before the socket answers, so the sweep
    # below never touches a build that a client starts meanwhile.
    stale_builds = build_containers(app.containers)
    hosts = args.hosts or [DEFAULT_HOST]
    try:
        gid = grp.getgrnam(args.group).gr_gid
    except KeyError:
        gid = -1
    sockets = await remote.listen(server, listeners, gid)
    # Handlers first: a SIGTERM while recovery still runs (the socket already answers) must
    # still end in the orderly shutdown below, or bridges and rules stay behind.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    from berth.daemon import settings
    loop.add_signal_handler(signal.SIGHUP, settings.reload, args, app)
    d.forkserver.start()
    await app.containers.recover()
    await sweep_builds(app.containers, stale_builds, app.builder.cache.kept_containers)
    log.info("berthd is up: %s", ", ".join(hosts))
    remote.notify_ready()
    await stop.wait()
    await server.close()
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
    d.db.close()
    os.close(lock_fd)


async def _stop_containers(app: App, timeout: int) -> None:
    """Stop the containers, waiting at most shutdown-timeout seconds (0: as long as it takes)."""
    task = asyncio.ensure_future(app.containers.shutdown())
    done, _ = await asyncio.wait([task], timeout=timeout or None)
    if not done:
        log.warning("containers still stopping after the shutdown timeout (%d s); exiting", timeout)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.version:
        print(f"berthd version {berth.__version__}")
        return
    from berth.daemon.settings import log_level
    logging.basicConfig(level=log_level(args), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if os.geteuid() != 0:
        raise SystemExit("berthd: must run as root")
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
