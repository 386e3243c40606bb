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
from pathlib import Path

from berth.state.paths import DataRoot, ExecRoot

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


class Context:
    """Everything the API handlers may use, built once by wire()."""


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


def wire(args: argparse.Namespace) -> Context:
    from berth.engine.containers import Containers
    from berth.engine.distribution import Distribution
    from berth.engine.images import ImageFiles, Images
    from berth.registry.client.options import Options as RegistryOptions
    from berth.engine.shims import ForkServer
    from berth.image.store import ImageStore
    from berth.oci.spec import encode_spec
    from berth.runtime.defaults import build_spec
    from berth.state.db import Database

    ctx = Context()
    ctx.data = data = DataRoot(Path(args.data_root))  # type: ignore[attr-defined]
    ctx.exec_root = exec_root = ExecRoot(Path(args.exec_root))  # type: ignore[attr-defined]
    ctx.daemon_id = _daemon_id(data)  # type: ignore[attr-defined]
    ctx.db = db = Database(data.db)  # type: ignore[attr-defined]
    ctx.image_store = store = ImageStore(db, data)  # type: ignore[attr-defined]
    store.sweep()
    ctx.forkserver = ForkServer(exec_root.forkserver)  # type: ignore[attr-defined]
    ctx.containers = Containers(db, data, exec_root, store, ctx.forkserver,  # type: ignore[attr-defined]
                                build_spec, encode_spec)
    ctx.images = Images(store, ctx.containers, str(data.image_tmp))  # type: ignore[attr-defined]
    ctx.image_files = ImageFiles(ctx.images)  # type: ignore[attr-defined]
    ctx.distribution = Distribution(store, RegistryOptions(  # type: ignore[attr-defined]
        insecure=list(getattr(args, "insecure_registries", [])), mirrors=list(getattr(args, "registry_mirrors", []))))
    ctx.cgroup_version = _cgroup_version()  # type: ignore[attr-defined]
    from berth.engine import events
    ctx.events = events.Events()  # type: ignore[attr-defined]
    ctx.containers.on_event = events.container_hook(ctx.events)  # type: ignore[attr-defined]
    ctx.images.on_event = events.image_hook(ctx.events)  # type: ignore[attr-defined]
    ctx.distribution.on_event = ctx.images.on_event  # type: ignore[attr-defined]
    from berth.engine.exec import Execs
    ctx.execs = Execs(ctx.containers, events.exec_hook(ctx.events, ctx.containers))  # type: ignore[attr-defined]
    from berth.engine.archive import Archives
    from berth.engine.health import HealthMonitor
    ctx.archives = Archives(ctx.containers)  # type: ignore[attr-defined]
    ctx.health = HealthMonitor(ctx.containers, ctx.execs,  # type: ignore[attr-defined]
                               events.exec_hook(ctx.events, ctx.containers))
    from berth.engine.attachments import Attachments
    from berth.engine.networks import Networks, instance_of
    from berth.engine.volumes import Volumes
    ctx.networks = Networks(db, data.root, instance_of(data.root), ctx.events.emit)  # type: ignore[attr-defined]
    ctx.volumes = Volumes(db, data.volumes, ctx.events.emit)  # type: ignore[attr-defined]
    ctx.attachments = ctx.containers.attachments = Attachments(  # type: ignore[attr-defined]
        ctx.networks, ctx.volumes, data, ctx.containers)  # type: ignore[attr-defined]
    _wire_builder(ctx, data, exec_root)
    return ctx


def _wire_builder(ctx: Context, data: DataRoot, exec_root: ExecRoot) -> None:
    from berth.build.admin import BuildAdmin
    from berth.build.builder import Builder
    from berth.build.cache import BuildCache
    cache = BuildCache(ctx.db)  # type: ignore[attr-defined]
    ctx.builder = Builder(ctx.containers, ctx.images, ctx.distribution, cache,  # type: ignore[attr-defined]
                          data.build_tmp, data.build_mounts, exec_root.root / "build")
    ctx.builder.sweep()  # type: ignore[attr-defined]
    ctx.build_admin = BuildAdmin(ctx.image_store, ctx.containers, cache)  # type: ignore[attr-defined]


def _cgroup_version() -> str:
    try:
        from berth.runtime.cgroups import detect
        return str(detect().version)
    except Exception:
        return "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1"


def build_server(ctx: Context):  # type: ignore[no-untyped-def]
    from berth.api import containers, events, exec as exec_api, images, system
    from berth.api.errors import error_response
    from berth.api.http import Router, Server

    router = Router()
    system.routes(router, ctx)
    images.routes(router, ctx)
    containers.routes(router, ctx)
    from berth.api import attach_ws
    attach_ws.routes(router, ctx)
    from berth.api import commit as commit_api, links as links_api
    commit_api.routes(router, ctx)
    links_api.routes(router, ctx)
    events.routes(router, ctx)
    exec_api.routes(router, ctx)
    from berth.api import networks as networks_api, volumes as volumes_api
    networks_api.routes(router, ctx)
    volumes_api.routes(router, ctx)
    from berth.api import build as build_api
    build_api.routes(router, ctx)
    from berth.api import swarm as swarm_api
    swarm_api.routes(router, ctx)
    from berth.api import jsonbody
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
    ctx = wire(args)
    ctx.live_restore = args.live_restore  # type: ignore[attr-defined]
    server = build_server(ctx)
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
    ctx.forkserver.start()  # type: ignore[attr-defined]
    await ctx.containers.recover()  # type: ignore[attr-defined]
    from berth.engine.build_support import sweep as sweep_builds
    await sweep_builds(ctx.containers)  # type: ignore[attr-defined]
    log.info("berthd is up: %s", ", ".join(hosts))
    await stop.wait()
    await server.close()
    if args.live_restore:
        log.info("shutting down (containers keep running)")
    else:
        log.info("shutting down: stopping the containers (live restore is off)")
        await ctx.containers.shutdown()  # type: ignore[attr-defined]
    await ctx.forkserver.stop()  # type: ignore[attr-defined]
    # With no container running, bridges and rules go (recreated at start); else they stay.
    await ctx.attachments.shutdown(list(ctx.containers.by_id.values()))  # type: ignore[attr-defined]
    for p in sockets:
        p.unlink(missing_ok=True)
    if args.pidfile:
        Path(args.pidfile).unlink(missing_ok=True)
    ctx.db.close()  # type: ignore[attr-defined]
    os.close(lock_fd)


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
