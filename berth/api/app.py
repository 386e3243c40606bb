"""The API's application context and its route tables.

``App`` is everything a handler may use: the engine objects, built once by ``daemon.wiring.wire``.
A handler is a module-level function ``async def h(app: App, req: Request)``; each resource
module lists its routes in ``ROUTES`` and ``register`` binds them to one ``App``::

    ROUTES: Routes = [("GET", "/volumes/{name}", inspect), ...]
    register(router, app, volumes.ROUTES)
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from berth.api.http import Request, Response, Router, StreamResponse

if TYPE_CHECKING:  # the engine is imported by daemon.main before the API is built
    from berth.build.admin import BuildAdmin
    from berth.build.service import Builder
    from berth.engine.archive import Archives
    from berth.engine.attachments import Attachments
    from berth.engine.containers import Containers
    from berth.engine.distribution import Distribution
    from berth.engine.events import Events
    from berth.engine.exec import Execs
    from berth.engine.health import HealthMonitor
    from berth.engine.image_files import ImageFiles
    from berth.engine.images import Images
    from berth.engine.networks import Networks
    from berth.engine.volumes import Volumes


@dataclass
class DaemonInfo:
    """What /info shows of berthd's configuration (daemon.json); SIGHUP changes it in place."""

    debug: bool = False
    labels: list[str] = field(default_factory=list)
    logging_driver: str = "json-file"
    init_binary: str = ""
    no_new_privileges: bool = False
    warnings: list[str] = field(default_factory=list)
    security_options: list[str] = field(default_factory=list)  # more of SecurityOptions (name=userns)
    driver_status: list[list[str]] = field(default_factory=list)  # more of DriverStatus (userns layers)
    rootless: bool = False      # in a user namespace of an ordinary user's (daemon/rootless.py)
    cgroups: bool = True        # False: rootless without a delegated cgroup v2 tree (driver "none")
    controllers: frozenset[str] | None = None  # rootless: the delegated tree's (None: all)
    rootless_net: str = ""      # rootless: pasta or slirp4netns (daemon/rootless_net.py)
    fuse_storage: bool = False  # rootless: fuse-overlayfs rather than kernel overlayfs


@dataclass
class App:
    """What the API handlers use, wired by the daemon."""

    root: Path                  # the data root (``DockerRootDir`` in /info)
    daemon_id: str
    cgroup_version: str
    containers: Containers
    images: Images
    image_files: ImageFiles
    distribution: Distribution
    events: Events
    execs: Execs
    archives: Archives
    health: HealthMonitor
    networks: Networks
    volumes: Volumes
    attachments: Attachments
    builder: Builder
    build_admin: BuildAdmin
    live_restore: bool = True
    config: DaemonInfo = field(default_factory=DaemonInfo)
    started: float = field(default_factory=time.time)
    shaped: dict[str, object] = field(default_factory=dict)  # answers kept by the handlers' modules


Handler = Callable[[App, Request], Awaitable["Response | StreamResponse | None"]]
Routes = list[tuple[str, str, Handler]]


Bound = Callable[[Request], Awaitable["Response | StreamResponse | None"]]
Wrap = Callable[[str, str, Bound], Bound]  # (method, pattern, handler) -> handler, e.g. metrics.observed


def register(router: Router, app: App, routes: Iterable[tuple[str, str, Handler]], wrap: Wrap | None = None) -> None:
    """Add each (method, path pattern, handler) of ``routes`` to ``router``, bound to ``app``
    (and wrapped by ``wrap`` when given: the metrics' request counters)."""
    for method, pattern, handler in routes:
        bound: Bound = functools.partial(handler, app)
        router.add(method, pattern, bound if wrap is None else wrap(method, pattern, bound))


def no_content() -> Response:
    return Response(204, b"", content_type=None)
