"""berthd: flags, the data-root lock, wiring (the one place objects are constructed), signals.

Start-up is on a budget (/_ping must answer well under 150 ms after exec): only the modules
the API needs are imported here; the fork server warms up the runtime in the background.
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
from typing import TYPE_CHECKING

from berth.state.paths import DataRoot, ExecRoot

if TYPE_CHECKING:  # imported inside wire(): start-up imports only what /_ping needs
    from berth.api.app import App
    from berth.api.http import Server
    from berth.build.admin import BuildAdmin
    from berth.build.builder import Builder
    from berth.engine.containers import Containers
    from berth.engine.images import Images
    from berth.engine.distribution import Distribution
    from berth.engine.shims import ForkServer
    from berth.image.store import ImageStore
    from berth.state.db import Database

log = logging.getLogger("berthd")

DEFAULT_HOST = "unix:///run/berth/berth.sock"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="berthd", description="berth: a Docker-compatible container engine")
    p.add_argument("-H", "--host", action="append", default=[], help="daemon socket(s) to connect to")
    p.add_argument("--data-root", default="/var/lib/berth", help="root of persistent berth state")
    p.add_argument("--exec-root", default="/run/berth", help="root of the berth execution state")
    p.add_argument("-p", "--pidfile", default=None, help="path to use for the daemon PID file")
    p.add_argument("-l", "--log-level", default="info", choices=["debug", "info", "warn", "error", "fatal"])
    p.add_argument("-G", "--group", default="docker", help="group for the unix socket")
    p.add_argument("-v", "--version", action="store_true")
    p.add_argument("--insecure-registry", action="append", default=[], dest="insecure_registries",
                   help="enable insecure registry communication (host[:port] or CIDR)")
    p.add_argument("--registry-mirror", action="append", default=[], dest="registry_mirrors",
                   help="preferred registry mirror (URL) for Docker Hub")
    p.add_argument("--live-restore", nargs="?", const=True, default=True, type=_bool_flag, metavar="BOOL",
                   help="keep containers running while berthd is down (default true; "
                        "--live-restore=false stops them when berthd exits, as dockerd does)")
    return p.parse_args(argv)


def _bool_flag(v: str) -> bool:
    """A boolean flag's value as Go's strconv.ParseBool reads it (dockerd's flags)."""
    if v in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if v in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean value {v!r}")


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
        from berth.state.atomic import write_atomic
        i = secrets.token_hex(16)
        write_atomic(p, i.encode())
        return i


def wire(args: argparse.Namespace) -> Daemon:
    from berth.api.app import App
    from berth.engine import events
    from berth.engine.archive import Archives
    from berth.engine.attachments import Attachments
    from berth.engine.containers import Containers
    from berth.engine.distribution import Distribution
    from berth.engine.exec import Execs
    from berth.engine.health import HealthMonitor
    from berth.engine.images import ImageFiles, Images
    from berth.engine.networks import Networks, instance_of
    from berth.engine.shims import ForkServer
    from berth.engine.volumes import Volumes
    from berth.image.store import ImageStore
    from berth.oci.spec import encode_spec
    from berth.registry.client.options import Options as RegistryOptions
    from berth.runtime.defaults import build_spec
    from berth.state.db import Database

    data = DataRoot(Path(args.data_root))
    exec_root = ExecRoot(Path(args.exec_root))
    db = Database(data.db)
    store = ImageStore(db, data)
    store.sweep()
    forkserver = ForkServer(exec_root.forkserver)
    containers = Containers(db, data, exec_root, store, forkserver, build_spec, encode_spec)
    images = Images(store, containers, str(data.image_tmp))
    distribution = Distribution(store, RegistryOptions(
        insecure=list(getattr(args, "insecure_registries", [])), mirrors=list(getattr(args, "registry_mirrors", []))))
    bus = events.Events()
    containers.on_event = events.container_hook(bus)
    images.on_event = events.image_hook(bus)
    distribution.on_event = images.on_event
    execs = Execs(containers, events.exec_hook(bus, containers))
    health = HealthMonitor(containers, execs, events.exec_hook(bus, containers))
    networks = Networks(db, data.root, instance_of(data.root), bus.emit)
    volumes = Volumes(db, data.volumes, bus.emit)
    attachments = containers.attachments = Attachments(networks, volumes, data, containers)
    builder, build_admin = _wire_builder(db, store, containers, images, distribution, data, exec_root)
    app = App(root=data.root, daemon_id=_daemon_id(data), cgroup_version=_cgroup_version(),
              containers=containers, images=images, image_files=ImageFiles(images), distribution=distribution,
              events=bus, execs=execs, archives=Archives(containers), health=health, networks=networks,
              volumes=volumes, attachments=attachments, builder=builder, build_admin=build_admin,
              live_restore=bool(getattr(args, "live_restore", True)))
    return Daemon(app, db, forkserver)


def _wire_builder(db: Database, store: ImageStore, containers: Containers, images: Images,
                  distribution: Distribution, data: DataRoot, exec_root: ExecRoot) -> tuple[Builder, BuildAdmin]:
    from berth.build.admin import BuildAdmin
    from berth.build.builder import Builder
    from berth.build.cache import BuildCache
    cache = BuildCache(db)
    pids = os.environ.get("BERTH_BUILD_PIDS_LIMIT")  # RUN steps' pids limit; 0 = none
    builder = Builder(containers, images, distribution, cache,
                      data.build_tmp, data.build_mounts, exec_root.root / "build",
                      **({"pids_limit": int(pids)} if pids else {}))
    builder.sweep()
    return builder, BuildAdmin(store, containers, cache)


def _cgroup_version() -> str:
    try:
        from berth.runtime.cgroups import detect
        return str(detect().version)
    except Exception:
        return "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1"


def build_server(app: App) -> Server:
    from berth.api import (attach_ws, build as build_api, commit as commit_api, containers, containers_io, events,
                           exec as exec_api, images, jsonbody, links as links_api, networks as networks_api,
                           swarm as swarm_api, system, system_df, volumes as volumes_api)
    from berth.api.app import register
    from berth.api.errors import error_response
    from berth.api.http import Router, Server

    router = Router()
    for table in (system.ROUTES, images.ROUTES, system_df.ROUTES, containers.ROUTES, containers_io.ROUTES,
                  attach_ws.ROUTES, commit_api.ROUTES, links_api.ROUTES, events.ROUTES, exec_api.ROUTES):
        register(router, app, table)
    networks_api.routes(router, app)
    register(router, app, volumes_api.ROUTES)
    build_api.routes(router, app)
    register(router, app, swarm_api.ROUTES)
    jsonbody.guard(router)
    headers = {"Api-Version": system.API_VERSION, "Docker-Experimental": "false", "Ostype": "linux",
               "Server": f"{system.SERVER} (linux)"}
    return Server(router, headers, error_response, (system.MIN_API_VERSION, system.API_VERSION))


async def serve(args: argparse.Namespace) -> None:
    data = DataRoot(Path(args.data_root))
    exec_root = ExecRoot(Path(args.exec_root))
    data.root.mkdir(parents=True, exist_ok=True)
    data.make()
    exec_root.root.mkdir(parents=True, exist_ok=True)
    exec_root.make()
    lock_fd = _lock(data)
    if args.pidfile:
        Path(args.pidfile).write_text(f"{os.getpid()}\n")
    d = wire(args)
    app = d.app
    server = build_server(app)
    hosts = args.host or [DEFAULT_HOST]
    sockets: list[Path] = []
    try:
        gid = grp.getgrnam(args.group).gr_gid
    except KeyError:
        gid = -1
    for h in hosts:
        if h.startswith("unix://"):
            path = Path(h[len("unix://"):])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.unlink(missing_ok=True)
            old = os.umask(0o117)
            try:
                await server.serve_unix(str(path))
            finally:
                os.umask(old)
            os.chmod(path, 0o660)
            if gid >= 0:
                os.chown(path, 0, gid)
            sockets.append(path)
        elif h.startswith("tcp://"):
            hostport = h.removeprefix("tcp://")
            host, _, port = hostport.rpartition(":")
            await server.serve_tcp(host or "127.0.0.1", int(port))
        else:
            raise SystemExit(f"berthd: unsupported host {h!r}")
    # Handlers first: a SIGTERM while recovery still runs (the socket already answers) must
    # still end in the orderly shutdown below, or bridges and rules stay behind.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    d.forkserver.start()
    await _recover(app)
    log.info("berthd is up: %s", ", ".join(hosts))
    await stop.wait()
    await server.close()
    if args.live_restore:
        log.info("shutting down (containers keep running)")
    else:
        log.info("shutting down: stopping the containers (live restore is off)")
        await app.containers.shutdown()
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


async def _recover(app: App) -> None:
    """Live restore and the start-up sweeps. A failure there (out of descriptors, a full
    disk) is logged, not fatal: the socket already answers, and a berthd that exits at every
    start is worse than one whose recovery is incomplete."""
    from berth.engine.build_support import sweep as sweep_builds
    try:
        await app.containers.recover()
        await sweep_builds(app.containers, app.builder.cache.kept_containers)
    except Exception:
        log.exception("start-up recovery is incomplete")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.version:
        import berth
        print(f"berthd version {berth.__version__}")
        return
    level = {"warn": "WARNING", "fatal": "CRITICAL"}.get(args.log_level, args.log_level.upper())
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if os.geteuid() != 0:
        raise SystemExit("berthd: must run as root")
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
