"""The container records and what every lifecycle step shares: the table by id (SQLite is the
source of truth), one asyncio.Lock per container, the futures of exit and remove waiters, the
attach subscriptions waiting for a start, the event and hook callbacks, and the ``Attachable``
hooks (networks and volumes) that ``engine.attachments`` provides.

``engine.containers`` builds one ``Containers`` on top of this table; the lifecycle modules
(``container_create``, ``container_start``, ``container_monitor``, ``container_stop``,
``container_ops``, ``container_recover``) each hold the same table.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Coroutine, Protocol

from berth.engine import container_userns
from berth.engine.container_defaults import ContainerDefaults
from berth.engine.container_userns import UsernsSettings
from berth.engine.model import Container, decode, encode
from berth.errors import InvalidArgument, NotFound
from berth.image.store import Image, ImageStore
from berth.oci.spec import Mount
from berth.engine.shims import PendingAttach
from berth.runtime.shim.protocol import ExitStatus

if TYPE_CHECKING:
    from berth.runtime.cgroups import Cgroup
from berth.runtime.cgroups import open_cgroup
from berth.state import rootless
from berth.state.db import Database
from berth.state.paths import DataRoot, ExecRoot
from berth.state.trash import Trash

log = logging.getLogger("berth.engine")

START_ERROR_PREFIX = ("failed to create shim task: OCI runtime create failed: runc create failed: "
                      "unable to start container process: ")


class NoSuchContainer(NotFound):
    pass


def now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


@dataclass
class SandboxArgs:
    """What the attachments add to a container's OCI spec at start (``build_spec`` arguments).

    ``netns``: ``""`` a new network namespace, a path to join one, None for the host's.
    """

    netns: str | None = ""
    extra_mounts: list[Mount] = field(default_factory=list)


# Plugs a network namespace in from outside the engine's networks (a CRI pod's CNI ADD): given
# the path of a namespace berthd made, it runs while the shim is spawned (``Containers.start``).
NetnsPlug = Callable[[str], Coroutine[Any, Any, None]]


class Attachable(Protocol):
    """The hooks of ``engine.attachments.Attachments`` that the lifecycle calls."""

    def prepare(self, c: Container, networking_config: dict[str, object] | None, hostname_given: bool) -> None: ...

    async def begin_start(self, c: Container, plug: NetnsPlug | None = None) -> SandboxArgs: ...

    async def after_spawn(self, c: Container, pid: int) -> None: ...

    async def ready_before_start(self, c: Container) -> bool: ...

    async def stopped(self, c: Container) -> None: ...

    def removed(self, c: Container, volumes: bool) -> None: ...

    async def recover(self, containers: list[Container]) -> None: ...

    def bridge_ip(self, c: Container) -> str: ...


class ContainerTable:
    """The records and the shared bookkeeping of the container lifecycle."""

    def __init__(self, db: Database, data: DataRoot, exec_root: ExecRoot, images: ImageStore):
        self.db = db
        self.data = data
        self.exec_root = exec_root
        self.images = images
        self.by_id: dict[str, Container] = {}
        self.locks: dict[str, asyncio.Lock] = {}
        self.exit_waiters: dict[str, list[asyncio.Future[ExitStatus]]] = {}
        self.remove_waiters: dict[str, list[asyncio.Future[ExitStatus]]] = {}
        # the shim's last word on an exited container (its cgroup removed): a new start waits for it
        self.releasing: dict[str, asyncio.Future[None]] = {}
        self.pending_attach: dict[str, list[PendingAttach]] = {}  # attach clients waiting for a start
        self.on_event: Callable[[str, Container, dict[str, str]], None] = lambda *a: None
        self.exit_hooks: list[Callable[[str], None]] = []  # called with the id after each exit
        self.start_hooks: list[Callable[[str], None]] = []  # ... and after each start
        self.attachments: Attachable | None = None  # networks and volumes; set by daemon/
        self.defaults = ContainerDefaults()         # daemon.json's defaults; set by daemon/
        self.userns = UsernsSettings()              # user namespaces; set by daemon/
        self.shutting_down = False  # set by shutdown(): exits then are not "manual" and restart nothing
        self.unsaved: set[str] = set()  # records changed in memory that the disk refused (save_soon)
        self._saver: asyncio.Task[None] | None = None
        self.trash = Trash(data.trash)  # removed containers' directories, deleted in the background
        for _, c in db.rows("containers", "id", decode):
            self.by_id[c.id] = c

    async def released(self, cid: str, timeout: float = 10) -> bool:
        """Wait until the last run's cgroup is gone: the shim removes it after the exit, or
        failing that berthd does (``Monitor``, which then sets a new future); False on timeout."""
        deadline = time.monotonic() + timeout
        while (f := self.releasing.get(cid)) is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            await asyncio.wait([f], timeout=left)
        return True

    def save(self, c: Container) -> None:
        with self.db.tx() as tx:
            tx.execute("INSERT OR REPLACE INTO containers VALUES (?,?,?,?)", (c.id, c.name, c.image_id, encode(c)))
        self.by_id[c.id] = c
        self.unsaved.discard(c.id)

    def save_soon(self, c: Container) -> None:
        """Save ``c``; if that fails (a full disk), keep it in memory and retry every second
        until it is written: an exit must not be lost because the disk was full when it came."""
        try:
            self.save(c)
            return
        except (OSError, sqlite3.Error) as e:
            log.error("container %s: saving its record (retried until it works): %s", c.id[:12], e)
        self.by_id[c.id] = c
        self.unsaved.add(c.id)
        if self._saver is None or self._saver.done():
            self._saver = asyncio.get_running_loop().create_task(self._save_unsaved())

    async def _save_unsaved(self) -> None:
        while self.unsaved:
            await asyncio.sleep(1)
            self.flush_unsaved()

    def flush_unsaved(self) -> None:
        """Try once more to save the records a full disk held back (also at shutdown)."""
        for cid in list(self.unsaved):
            c = self.by_id.get(cid)
            if c is None:
                self.unsaved.discard(cid)
                continue
            try:
                self.save(c)
            except (OSError, sqlite3.Error):
                return

    def delete(self, c: Container) -> None:
        with self.db.tx() as tx:
            tx.execute("DELETE FROM containers WHERE id=?", (c.id,))
        self.by_id.pop(c.id, None)
        container_userns.release(c.id, self.userns)

    def lock(self, cid: str) -> asyncio.Lock:
        lk = self.locks.get(cid)
        if lk is None:
            lk = self.locks[cid] = asyncio.Lock()
        return lk

    def get(self, ref: str) -> Container:
        """By full ID, name (with or without "/"), or unique ID prefix."""
        c = self.by_id.get(ref)
        if c is not None:
            return c
        name = ref.removeprefix("/")
        for c in self.by_id.values():
            if c.name == name:
                return c
        if ref and all(ch in "0123456789abcdef" for ch in ref):
            found = [c for cid, c in self.by_id.items() if cid.startswith(ref)]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise InvalidArgument(f"multiple IDs found with provided prefix: {ref}")
        raise NoSuchContainer(f"No such container: {ref}")

    def list(self) -> list[Container]:
        return sorted(self.by_id.values(), key=lambda c: c.created, reverse=True)

    def using_image(self, image_id: str) -> builtins.list[Container]:
        return [c for c in self.by_id.values() if c.image_id == image_id]

    def cgroup(self, c: Container) -> Cgroup:
        return open_cgroup(c.cgroups_path)

    def overlay(self, c: Container, image: Image) -> tuple[builtins.list[Path], str]:
        """The container's overlay: its image's layer dirs (an empty dir for an image without
        layers: overlayfs needs a lowerdir) and the mount options over its writable layer."""
        d = self.data.container(c.id)
        lowers = self.images.lower_dirs(image)
        if not lowers:
            empty = self.data.root / "image" / "empty"
            empty.mkdir(exist_ok=True)
            lowers = [empty]
        return lowers, f"lowerdir={':'.join(str(p) for p in lowers)},upperdir={d.upper},workdir={d.work}" \
            + rootless.overlay_options()

    # -- waiters ----------------------------------------------------------------------------

    def exit_future(self, cid: str) -> asyncio.Future[ExitStatus]:
        f: asyncio.Future[ExitStatus] = asyncio.get_running_loop().create_future()
        self.exit_waiters.setdefault(cid, []).append(f)
        return f

    def resolve_exit(self, cid: str, status: ExitStatus) -> None:
        for f in self.exit_waiters.pop(cid, []):
            if not f.done():
                f.set_result(status)

    def fail_pending_attach(self, cid: str) -> None:
        for pending in self.pending_attach.pop(cid, []):
            pending.cancel()

    async def run_pending_attach(self, cid: str) -> None:
        """Attach clients that were waiting for this start (before the init is released)."""
        for pending in self.pending_attach.pop(cid, []):
            await pending.subscribe()

    def carry_attach(self, cid: str) -> PendingAttach | None:
        """The first attach client waiting for this start, which the spawn request carries
        (its stream is the spawn connection: no connection of its own, no round trip)."""
        waiting = self.pending_attach.get(cid)
        if not waiting:
            return None
        pending = waiting.pop(0)
        if not waiting:
            del self.pending_attach[cid]
        return pending

    def started(self, cid: str) -> None:
        for hook in self.start_hooks:
            hook(cid)
