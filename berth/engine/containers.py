"""Containers: the engine's one object for them, built once by daemon/. It is the record table
(``container_table``) and hands each step of the lifecycle to the module that owns it:

    create, rename                        container_create   (checks, config merge, names)
    start                                 container_start    (/etc files, OCI spec, shim, init)
    exits, restart policy                 container_monitor  (health hooks in via exit_hooks)
    kill, stop, remove, shutdown          container_stop
    pause, update, wait, attach, resize   container_ops
    recover (berthd start)                container_recover  (live restore, orphan sweep)

State machine::

    created --start--> running --(init exits)--> exited --start--> running ...
       |                  |                          |
       +------remove------+---(force)---remove-------+--> (gone)

Every change is one SQLite transaction (the record is the source of truth for berthd), and
the shim's ``exit.json`` is the source of truth for an exit that happened while berthd was
away. One asyncio.Lock per container serializes mutations.
"""

from __future__ import annotations

import asyncio
from typing import Callable

from berth.engine import shims
from berth.engine.container_create import CreateRequest, Creator
from berth.engine.container_monitor import Monitor
from berth.engine.container_ops import UPDATABLE, Operations, Stream
from berth.engine.container_recover import Recovery
from berth.engine.container_start import SpecBuilder, Starter
from berth.engine.container_stop import Stopper, parse_signal
from berth.engine.container_table import START_ERROR_PREFIX, ContainerTable, NetnsPlug, NoSuchContainer, now
from berth.engine.model import Container
from berth.image.store import ImageStore
from berth.oci.spec import Spec
from berth.runtime.shim.protocol import ExitStatus
from berth.state.db import Database
from berth.state.paths import DataRoot, ExecRoot

__all__ = ["Containers", "NoSuchContainer", "START_ERROR_PREFIX", "UPDATABLE", "now", "parse_signal"]


class Containers(ContainerTable):
    """The container engine. Built once by daemon/ with its collaborators."""

    def __init__(self, db: Database, data: DataRoot, exec_root: ExecRoot, images: ImageStore,
                 forkserver: shims.ForkServer, build_spec: Callable[..., Spec],
                 encode_spec: Callable[[Spec], bytes]):
        super().__init__(db, data, exec_root, images)
        self.forkserver = forkserver
        self.creator = Creator(self)
        self.monitor = Monitor(self)
        self.stopper = Stopper(self, self.monitor)
        self.specs = SpecBuilder(self, build_spec)
        self.starter = Starter(self, self.specs, forkserver, encode_spec, self.monitor, self.stopper)
        self.ops = Operations(self, self.specs)
        self.recovery = Recovery(self, self.monitor, self.stopper)
        self.monitor.bind(start=self.starter.start, remove=self.stopper.remove_locked)

    # -- create -----------------------------------------------------------------------------

    def create(self, req: CreateRequest, name: str | None) -> tuple[Container, list[str]]:
        return self.creator.create(req, name)

    def rename(self, ref: str, new: str) -> None:
        self.creator.rename(ref, new)

    # -- start, restart ---------------------------------------------------------------------

    async def start(self, ref: str, by_policy: bool = False, plug: NetnsPlug | None = None) -> None:
        """Start; ``plug`` (a ``NetworkMode: none`` container's) is given a namespace made by
        berthd and runs while the shim is spawned; the init is released once it returned."""
        await self.starter.start(ref, by_policy, plug)

    async def restart(self, ref: str, timeout: int | None, sig: str | None = None) -> None:
        c = self.get(ref)
        if c.running:
            await self.stopper.stop(c.id, timeout, sig)
        await self.starter.start(c.id)
        self.on_event("restart", c, {})  # docker counts policy restarts only (restart_count stays)

    # -- kill, stop, remove -----------------------------------------------------------------

    async def kill(self, ref: str, sig: str | int | None) -> None:
        await self.stopper.kill(ref, sig)

    async def stop(self, ref: str, timeout: int | None, sig: str | None = None) -> None:
        await self.stopper.stop(ref, timeout, sig)

    async def remove(self, ref: str, force: bool, volumes: bool = False) -> None:
        await self.stopper.remove(ref, force, volumes)

    async def shutdown(self) -> None:
        await self.stopper.shutdown()

    def shutdown_wait(self, floor: int) -> float | None:
        return self.stopper.shutdown_wait(floor)

    async def flush_removed(self) -> None:
        """Wait until the files of the containers removed so far are deleted (``remove``
        deletes them in the background): for a caller that needs the space back now."""
        await asyncio.to_thread(self.trash.flush)

    # -- while it lives ---------------------------------------------------------------------

    async def pause(self, ref: str) -> None:
        await self.ops.pause(ref)

    async def unpause(self, ref: str) -> None:
        await self.ops.unpause(ref)

    async def update(self, ref: str, changes: dict[str, object],
                     hugepage_limits: dict[str, int] | None = None) -> list[str]:
        return await self.ops.update(ref, changes, hugepage_limits)

    def wait_future(self, ref: str, condition: str) -> asyncio.Future[ExitStatus]:
        return self.ops.wait_future(ref, condition)

    async def attach_stream(self, ref: str, stdin: bool, stdout: bool, stderr: bool) -> Stream:
        return await self.ops.attach_stream(ref, stdin, stdout, stderr)

    def attach_soon(self, ref: str, stdin: bool, stdout: bool, stderr: bool) -> asyncio.Future[Stream]:
        return self.ops.attach_soon(ref, stdin, stdout, stderr)

    async def resize(self, ref: str, h: int, w: int) -> None:
        await self.ops.resize(ref, h, w)

    async def reopen_cri_log(self, ref: str) -> None:
        await self.ops.reopen_cri_log(ref)

    def pids(self, c: Container) -> list[int]:
        return self.ops.pids(c)

    def size_rw(self, c: Container) -> int:
        return self.ops.size_rw(c)

    # -- berthd start -----------------------------------------------------------------------

    async def recover(self, live_restore: bool = True) -> None:
        await self.recovery.recover(live_restore)
