"""berthd's wiring: the one place the engine's objects are constructed, and the routing table.

``daemon.main`` imports this module in a thread while its socket already answers ``/_ping``
(docs/design-notes.md, "berthd listens before its engine is ready"): everything the API and the
engine need is imported here, at module level, and so off the path to the first ping.
"""

from __future__ import annotations

import argparse
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

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
from berth.api.app import App, Wrap, register
from berth.api.errors import error_response
from berth.api.http import Router, Server
from berth.api.ping import API_VERSION, HEADERS, MIN_API_VERSION
from berth.build.admin import BuildAdmin
from berth.build.service import Builder
from berth.build.cache import BuildCache
from berth.daemon import settings
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
from berth.state.paths import DataRoot, ExecRoot

__all__ = ["Daemon", "add_routes", "build_containers", "build_server", "sweep_builds", "wire"]


@dataclass
class Daemon:
    """What wire() built: the API's context, and what only the daemon itself drives."""

    app: App
    db: Database
    forkserver: ForkServer


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
    forkserver = ForkServer(exec_root.forkserver, seccomp_cache=data.seccomp_cache)
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
    app.config.driver_status = settings.userns_layers(containers.userns, data, containers.trash)
    return Daemon(app, db, forkserver)


def _wire_builder(db: Database, store: ImageStore, containers: Containers, images: Images,
                  distribution: Distribution, data: DataRoot, exec_root: ExecRoot) -> tuple[Builder, BuildAdmin]:
    cache = BuildCache(db)
    pids = os.environ.get("BERTH_BUILD_PIDS_LIMIT")  # RUN steps' pids limit; 0 = none
    if not containers.defaults.cgroups:
        pids = "0"   # rootless without cgroups: no limit can be set (and asking for one is refused)
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


def add_routes(router: Router, app: App, wrap: Wrap | None = None) -> None:
    """Every route of the Engine API, on ``router`` (each wrapped by ``wrap``: the metrics')."""
    for table in (system.ROUTES, images_api.ROUTES, system_df.ROUTES, containers_api.ROUTES, containers_io.ROUTES,
                  attach_ws.ROUTES, commit_api.ROUTES, links_api.ROUTES, events_api.ROUTES, exec_api.ROUTES,
                  networks_api.ROUTES, volumes_api.ROUTES, build_api.ROUTES, swarm_api.ROUTES):
        register(router, app, table, wrap)
    jsonbody.guard(router)


def build_server(app: App) -> Server:
    """A server with every route, ready at once (tests drive the API through it)."""
    router = Router()
    add_routes(router, app)
    return Server(router, HEADERS, error_response, (MIN_API_VERSION, API_VERSION))
